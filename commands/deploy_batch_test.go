package commands

import (
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"
)

// A batch job has no deployment: deploy says it is registered and stops,
// instead of waiting for a deployment that never comes.
func TestDeployBatchJobHasNothingToFollow(t *testing.T) {
	f, fake := newNomadFixture(t, "")
	job := api.NewBatchJob("report", "report", "global", 50)
	job.AddDatacenter("dc1")
	job.AddTaskGroup(api.NewTaskGroup("report", 1).AddTask(api.NewTask("report", "docker").SetConfig("image", "report:1")))
	fake.AddJob(*job)
	c, _ := code(t, f.say(t, "@alice:x", "deploy report image=report:2"))
	out := plains(f.say(t, "@alice:x", "confirm "+c))
	if !strings.Contains(out, "✅ report registered (evaluation") || !strings.Contains(out, "no deployment to follow, see !vigie job report") {
		t.Fatalf("batch deploy:\n%s", out)
	}
}
