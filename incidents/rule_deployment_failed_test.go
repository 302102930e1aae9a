package incidents

import (
	"testing"

	"github.com/vigie/vigie/watchers"
)

func TestRuleDeploymentFailed(t *testing.T) {
	r := DeploymentFailed{Severity: Critical, CanarySeverity: Warning}
	crasher := func(status Status, reason string, detail *Detail) Signal {
		return Signal{
			Rule: "deployment-failed", Key: "deployment/default/crasher", Severity: Critical, Status: status,
			Title: "crasher: deployment failed", Reason: reason, Detail: detail,
			Labels:     Labels{Namespace: "default", Job: "crasher", Deployment: crasherDeploy},
			Occurrence: crasherDeploy + "/failed",
		}
	}
	canaries := func(ev *watchers.Event) {
		g := &ev.Deployment.Groups[0]
		g.DesiredCanaries, g.Unhealthy = 2, 1
	}
	const webV1 = "645eb562-0d71-133a-29f0-bc807225c5c7"
	runEventCases(t, r, []eventCase{
		{
			name: "crasher deployment failed", index: 24, topic: "Deployment", id: crasherDeploy,
			want: []Signal{crasher(Firing, "Failed due to unhealthy allocations", &Detail{
				Text: "deployment f7ef71d7 (job version 0): Failed due to unhealthy allocations; group crasher: 1 desired, 1 placed, 0 healthy, 1 unhealthy",
			})},
		},
		{
			name: "failed and auto-reverted", index: 24, topic: "Deployment", id: crasherDeploy,
			mutate: func(ev *watchers.Event) {
				ev.Deployment.StatusDescription = "Failed due to unhealthy allocations - rolling back to job version 0"
				ev.Deployment.Groups[0].AutoRevert = true
			},
			want: []Signal{crasher(Firing, "Failed due to unhealthy allocations; auto-reverting to version 0's spec", &Detail{
				Text: "deployment f7ef71d7 (job version 0): Failed due to unhealthy allocations - rolling back to job version 0; group crasher: 1 desired, 1 placed, 0 healthy, 1 unhealthy",
			})},
		},
		{
			// The watcher found the job registered again in the same raft entry.
			name: "failed and auto-reverted, running as version 2", index: 24, topic: "Deployment", id: crasherDeploy,
			mutate: func(ev *watchers.Event) {
				ev.Deployment.StatusDescription = "Failed due to unhealthy allocations - rolling back to job version 0"
				ev.Deployment.RevertedAs = 2
			},
			want: []Signal{crasher(Firing, "Failed due to unhealthy allocations; auto-reverted to version 0's spec, running as version 2", &Detail{
				Text: "deployment f7ef71d7 (job version 0): Failed due to unhealthy allocations - rolling back to job version 0; group crasher: 1 desired, 1 placed, 0 healthy, 1 unhealthy",
			})},
		},
		{name: "crasher running with an unhealthy allocation, no canaries", index: 23, topic: "Deployment", id: crasherDeploy},
		{
			name: "web deployment successful", index: 17, topic: "Deployment", id: webDeployV0,
			want: []Signal{{
				Rule: "deployment-failed", Key: "deployment/default/web", Severity: Critical, Status: Resolved,
				Reason: "deployment a6a5c578 successful", Labels: Labels{Namespace: "default", Job: "web", Deployment: webDeployV0},
			}},
		},
		{name: "web v1 deployment running", index: 27, topic: "Deployment", id: webV1},
		{
			name: "unhealthy canaries", index: 27, topic: "Deployment", id: webV1, mutate: canaries,
			want: []Signal{{
				Rule: "deployment-failed", Key: "deployment/default/web", Severity: Warning, Status: Firing,
				Title: "web: deployment canaries unhealthy", Reason: "canaries unhealthy: 1 of 2",
				Detail:     &Detail{Text: "deployment 645eb562 (job version 1): Deployment is running; group web: 1 desired (2 canaries), 1 placed, 0 healthy, 1 unhealthy"},
				Labels:     Labels{Namespace: "default", Job: "web", Deployment: webV1},
				Occurrence: webV1 + "/canaries/1",
			}},
		},
		{
			name: "unhealthy allocations after promotion are not canaries", index: 27, topic: "Deployment", id: webV1,
			mutate: func(ev *watchers.Event) {
				canaries(ev)
				ev.Deployment.Groups[0].Promoted = true
			},
		},
		{
			name: "crasher stopped", index: 36, topic: "Job", id: "crasher",
			want: []Signal{{
				Rule: "deployment-failed", Key: "deployment/default/crasher", Severity: Critical, Status: Resolved,
				Reason: "job stopped", Labels: Labels{Namespace: "default", Job: "crasher"},
			}},
		},
	})
}
