package incidents

import (
	"fmt"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("backup-verify-failed", func() Rule { return BackupVerifyFailed{Severity: Critical} })
}

// BackupVerifyFailed fires when a backup does not verify (a checksum, a
// snapshot's sums, a restore's row counts) or cannot be verified; the
// next good verification of the target resolves it.
type BackupVerifyFailed struct {
	Severity Severity
}

func (BackupVerifyFailed) Name() string { return "backup-verify-failed" }

func (r BackupVerifyFailed) Evaluate(ev *watchers.Event) []Signal {
	b := ev.Backup
	if b == nil || ev.Type != watchers.BackupRun || b.Action != "verify" {
		return nil
	}
	sig := Signal{Rule: r.Name(), Key: signalKey("backup-verify", b.Target), Severity: r.Severity,
		Title: "verification of " + b.Target + " backups failed", At: ev.Time, Occurrence: fmt.Sprintf("run %d", b.RunID)}
	if b.Outcome == "ok" {
		sig.Status, sig.Reason = Resolved, "backup "+b.BackupID+" verified"
		return []Signal{sig}
	}
	sig.Status, sig.Reason = Firing, b.Error
	if b.BackupID != "" {
		sig.Reason = b.BackupID + ": " + b.Error
	}
	if b.Detail != "" {
		sig.Detail = &Detail{Text: sig.Reason, Pre: b.Detail}
	}
	return []Signal{sig}
}
