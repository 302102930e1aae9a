package incidents

import (
	"fmt"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("job-stopped", func() Rule { return JobStopped{Severity: Info} })
}

// JobStopped posts a notice when a job is stopped or purged. Dispatched
// and periodic children are left out: they come and go by design.
type JobStopped struct {
	Severity Severity
}

func (JobStopped) Name() string { return "job-stopped" }

func (r JobStopped) Evaluate(ev *watchers.Event) []Signal {
	j := ev.Job
	if j == nil || ev.Type != "JobDeregistered" || j.ParentID != "" {
		return nil
	}
	var title, reason string
	switch {
	case j.Purged:
		title, reason = "Job "+j.ID+" purged", "purged"
	case j.Stop:
		title, reason = "Job "+j.ID+" stopped", fmt.Sprintf("stopped at version %d", j.Version)
	default:
		return nil
	}
	ns := eventNamespace(ev)
	return []Signal{{
		Rule: r.Name(), Key: signalKey("job", ns, j.ID), Severity: r.Severity, Status: Notice,
		Title: title, Reason: reason, Labels: Labels{Namespace: ns, Job: j.ID}, At: ev.Time,
	}}
}
