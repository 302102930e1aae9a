package incidents

import (
	"fmt"
	"time"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("backup-stale", func() Rule { return BackupStale{Severity: Critical} })
}

// BackupStale fires when a target has had no good backup for longer than
// its max_age, whatever the reason (failing, not scheduled, Vigie down);
// a good backup resolves it.
type BackupStale struct {
	Severity Severity
}

func (BackupStale) Name() string { return "backup-stale" }

func (r BackupStale) Evaluate(ev *watchers.Event) []Signal {
	b := ev.Backup
	if b == nil {
		return nil
	}
	sig := Signal{Rule: r.Name(), Key: signalKey("backup-age", b.Target), Severity: r.Severity,
		Title: "no recent backup of " + b.Target, At: ev.Time}
	switch {
	case ev.Type == watchers.BackupStale:
		sig.Status = Firing
		sig.Reason = fmt.Sprintf("no good backup for more than %s (max_age)", shortAge(b.MaxAge))
		if !b.LastGood.IsZero() {
			sig.Reason = fmt.Sprintf("the last good backup, %s, ended %s ago (max_age %s)", b.BackupID, shortAge(ev.Time.Sub(b.LastGood)), shortAge(b.MaxAge))
		}
		sig.Occurrence = "stale since " + b.BackupID // one count per backup it outlived
	case ev.Type == watchers.BackupFresh, ev.Type == watchers.BackupRun && b.Action == "backup" && b.Outcome == "ok":
		sig.Status, sig.Reason = Resolved, "a good backup is recent again"
	default:
		return nil
	}
	return []Signal{sig}
}

// shortAge prints a duration in whole hours, minutes below two hours,
// seconds below two minutes.
func shortAge(d time.Duration) string {
	switch {
	case d >= 2*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	case d >= 2*time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return d.Round(time.Second).String()
}
