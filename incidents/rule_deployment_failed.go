package incidents

import (
	"fmt"
	"strings"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("deployment-failed", func() Rule {
		return DeploymentFailed{Severity: Critical, CanarySeverity: Warning}
	})
}

// DeploymentFailed fires when a job's deployment fails, or earlier, while
// its canaries are unhealthy; the job's next successful deployment (or its
// stop) resolves it.
type DeploymentFailed struct {
	Severity       Severity // a failed deployment
	CanarySeverity Severity // unhealthy canaries of a running deployment
}

func (DeploymentFailed) Name() string { return "deployment-failed" }

func (r DeploymentFailed) Evaluate(ev *watchers.Event) []Signal {
	ns := eventNamespace(ev)
	if reason, ended := jobEnded(ev); ended {
		return []Signal{{
			Rule: r.Name(), Key: signalKey("deployment", ns, ev.Job.ID), Severity: r.Severity,
			Status: Resolved, Reason: reason, Labels: Labels{Namespace: ns, Job: ev.Job.ID}, At: ev.Time,
		}}
	}
	d := ev.Deployment
	if d == nil {
		return nil
	}
	sig := Signal{
		Rule: r.Name(), Key: signalKey("deployment", ns, d.Job), Severity: r.Severity,
		Labels: Labels{Namespace: ns, Job: d.Job, Deployment: d.ID}, At: ev.Time,
	}
	switch d.Status {
	case "failed":
		sig.Status, sig.Title, sig.Reason = Firing, d.Job+": deployment failed", failedReason(d)
		sig.Occurrence = d.ID + "/failed"
	case "successful":
		sig.Status, sig.Reason = Resolved, "deployment "+nomadShortID(d.ID)+" successful"
		return []Signal{sig}
	case "running":
		unhealthy, canaries := 0, 0
		for _, g := range d.Groups {
			// After promotion the unhealthy count covers regular
			// allocations, which fail the deployment on their own.
			if g.DesiredCanaries > 0 && !g.Promoted {
				unhealthy += g.Unhealthy
				canaries += g.DesiredCanaries
			}
		}
		if unhealthy == 0 {
			return nil
		}
		sig.Status, sig.Severity, sig.Title = Firing, r.CanarySeverity, d.Job+": deployment canaries unhealthy"
		sig.Reason = fmt.Sprintf("canaries unhealthy: %d of %d", unhealthy, canaries)
		sig.Occurrence = fmt.Sprintf("%s/canaries/%d", d.ID, unhealthy)
	default:
		return nil
	}
	sig.Detail = &Detail{Text: deploymentProgress(d)}
	return []Signal{sig}
}

// rollbackNote is how Nomad's deployment watcher ends the description of
// a deployment failed with an auto-revert: "<why> - rolling back to job
// version N" (nomad/structs DeploymentStatusDescriptionRollback).
const rollbackNote = " - rolling back to job version "

// failedReason says why a deployment failed and, after an auto-revert,
// which version's spec runs again, and as which version.
func failedReason(d *watchers.Deployment) string {
	why, version, ok := strings.Cut(d.StatusDescription, rollbackNote)
	if !ok {
		return d.StatusDescription
	}
	if d.RevertedAs == 0 {
		return why + "; auto-reverting to version " + version + "'s spec"
	}
	return fmt.Sprintf("%s; auto-reverted to version %s's spec, running as version %d", why, version, d.RevertedAs)
}

// deploymentProgress is the deployment's per-group counts, as the Nomad
// CLI shows them.
func deploymentProgress(d *watchers.Deployment) string {
	var b strings.Builder
	fmt.Fprintf(&b, "deployment %s (job version %d): %s", nomadShortID(d.ID), d.JobVersion, d.StatusDescription)
	for _, g := range d.Groups {
		fmt.Fprintf(&b, "; group %s: %d desired", g.Name, g.Desired)
		if g.DesiredCanaries > 0 {
			fmt.Fprintf(&b, " (%d canaries)", g.DesiredCanaries)
		}
		fmt.Fprintf(&b, ", %d placed, %d healthy, %d unhealthy", g.Placed, g.Healthy, g.Unhealthy)
	}
	return b.String()
}
