package commands

import (
	"fmt"
	"strings"
	"time"

	"github.com/vigie/vigie/nomadops"
	"github.com/vigie/vigie/render"
)

// Shared rendering of Nomad state for the Nomad commands.

// renderProgress is a deployment's live state, for progress messages.
func renderProgress(p nomadops.DeploymentProgress, since time.Duration) render.Node {
	mark := map[string]string{"successful": "✅", "failed": "❌", "cancelled": "⛔"}[p.Status]
	if mark == "" {
		mark = "🚀"
	}
	head := fmt.Sprintf("%s %s version %d: deployment %s %s (%s)", mark, p.JobID, p.JobVersion, short(p.ID), p.Status, since.Round(time.Second))
	var groups []render.Node
	for _, g := range p.Groups {
		line := fmt.Sprintf("%s: %d/%d placed, %d healthy, %d unhealthy", g.Name, g.Placed, g.Desired, g.Healthy, g.Unhealthy)
		if g.DesiredCanaries > 0 {
			line += fmt.Sprintf(", canaries %d/%d", g.PlacedCanaries, g.DesiredCanaries)
			if !g.Promoted {
				line += " (not promoted)"
			}
		}
		groups = append(groups, render.Text(line))
	}
	nodes := []render.Node{render.Heading(render.Text(head)), render.List(groups...)}
	if p.Description != "" {
		nodes = append(nodes, render.Line(render.Text(p.Description)))
	}
	return render.Group(nodes...)
}

// short shortens a Nomad UUID as Nomad's CLI does.
func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// imageChanges lists image changes as "group/task: old → new".
func imageChanges(changes []nomadops.ImageChange) []string {
	out := make([]string, len(changes))
	for i, c := range changes {
		out[i] = fmt.Sprintf("%s/%s: %s → %s", c.Group, c.Task, orDash(c.Old), c.New)
	}
	return out
}

// listOf renders strings as a list of code items.
func listOf(items []string) render.Node {
	nodes := make([]render.Node, len(items))
	for i, s := range items {
		nodes[i] = render.Code(s)
	}
	return render.List(nodes...)
}

func joinOr(items []string, empty string) string {
	if len(items) == 0 {
		return empty
	}
	return strings.Join(items, ", ")
}
