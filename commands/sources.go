package commands

import (
	"strings"

	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/watchers"
)

// Sources is what the commands show of Vigie's own watch: whether it can
// read each source its alerts come from.
type Sources interface {
	Statuses() []watchers.SourceStatus
}

// unseenSources lists the sources Vigie cannot read right now, or that
// leave part of their state out, one line each; none when it reads them
// all (or watches nothing).
func unseenSources(src Sources) []render.Node {
	if src == nil {
		return nil
	}
	var out []render.Node
	for _, s := range src.Statuses() {
		if s.Up && s.Missing != "" {
			out = append(out, render.Group(render.Bold(render.Text("🟠 Vigie sees only part of "+s.Display)), render.Text(": "+s.Missing+" ("+s.Address+")")))
		}
		if s.Up {
			continue
		}
		head := "🟠 " + s.Display + " not answering since " + s.Since.UTC().Format("15:04:05 UTC")
		if s.Blind {
			head = "🔴 Vigie cannot see " + s.Display + " since " + s.Since.UTC().Format("15:04 UTC")
		}
		out = append(out, render.Group(render.Bold(render.Text(head)), render.Text(": "+s.Reason+" ("+s.Address+")")))
	}
	return out
}

// seenSources names the sources Vigie reads, e.g. "Nomad, Consul".
func seenSources(src Sources) string {
	if src == nil {
		return ""
	}
	var names []string
	for _, s := range src.Statuses() {
		if s.Up {
			names = append(names, s.Display)
		}
	}
	return strings.Join(names, ", ")
}

// watchSection says what Vigie sees of its sources: the ones it cannot
// read, or the ones it reads; nothing when it watches no source.
func watchSection(src Sources) []render.Node {
	if unseen := unseenSources(src); len(unseen) > 0 {
		return []render.Node{render.Heading(render.Text("Vigie's watch")), render.List(unseen...)}
	}
	if seen := seenSources(src); seen != "" {
		return []render.Node{render.Line(render.Text("Vigie sees " + seen + "."))}
	}
	return nil
}
