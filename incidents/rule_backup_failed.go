package incidents

import (
	"fmt"
	"strings"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("backup-failed", func() Rule { return BackupFailed{Severity: Critical} })
}

// BackupFailed fires when a backup run fails or is interrupted (the tool's
// standard error goes to the thread); the next good backup of the target
// resolves it.
type BackupFailed struct {
	Severity Severity
}

func (BackupFailed) Name() string { return "backup-failed" }

func (r BackupFailed) Evaluate(ev *watchers.Event) []Signal {
	b := ev.Backup
	if b == nil || ev.Type != watchers.BackupRun || b.Action != "backup" {
		return nil
	}
	sig := Signal{
		Rule: r.Name(), Key: signalKey("backup", b.Target), Severity: r.Severity, Title: "backup of " + b.Target + " failed",
		At: ev.Time, Occurrence: fmt.Sprintf("run %d", b.RunID),
	}
	if b.Outcome == "ok" {
		sig.Status, sig.Reason = Resolved, "backup "+b.BackupID+" stored"
		return []Signal{sig}
	}
	sig.Status, sig.Reason = Firing, b.Error
	if b.Outcome == "interrupted" {
		sig.Title = "backup of " + b.Target + " interrupted"
	}
	detail := &Detail{Text: fmt.Sprintf("%s run (%s): %s", b.Outcome, b.Trigger, b.Error)}
	if out := strings.TrimSpace(b.Detail); out != "" {
		detail.Pre = out
	}
	sig.Detail = detail
	return []Signal{sig}
}
