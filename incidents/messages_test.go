package incidents

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html"

	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

// A job named like markup, from a real rule on a real-shaped event, shows
// as text in every message the incident causes.
func TestHostileNamesAreEscaped(t *testing.T) {
	f := newFixture(t, builtinRules(t))
	evil := `<img src=x onerror=alert(1)>**bold**[x](http://e)`
	ev := watchers.Event{Source: "nomad", Topic: "Allocation", Type: "AllocationUpdated", Namespace: "default", Alloc: &watchers.Alloc{
		ID: "aeb926df-c1d5-fba7-ac31-97f32a5f73f5", Job: evil, Group: evil, NodeName: "vm", ClientStatus: "failed", DesiredStatus: "run",
		Tasks: []watchers.Task{{Name: evil, State: "dead", Failed: true, StderrTail: "</code></pre><script>x</script>",
			Events: []watchers.TaskEvent{{Type: "Terminated", ExitCode: 1, Message: evil}}}},
	}}
	if err := f.e.Consume(t.Context(), watchers.Batch{Events: []watchers.Event{ev}}); err != nil {
		t.Fatal(err)
	}
	roots, _, threads := f.messages("!ops")
	if len(roots) != 1 || len(threads) != 1 {
		t.Fatalf("%d roots %d threads", len(roots), len(threads))
	}
	for _, m := range append(roots, threads...) {
		if strings.Contains(m.HTML, "<img") || strings.Contains(m.HTML, "<script") || strings.Contains(m.HTML, "</pre><") {
			t.Fatalf("markup from a job name reached the HTML:\n%s", m.HTML)
		}
		if !strings.Contains(m.Plain, evil) && !strings.Contains(m.Plain, "<script>x</script>") {
			t.Fatalf("plain text lost the name:\n%s", m.Plain)
		}
	}
}

func FuzzRenderIncident(f *testing.F) {
	f.Add("web/api: allocations failing", "task server exited with code 1", `{"Job":"web"}`, 3, 2)
	f.Add("<b>x</b>", "&amp;\x00\xff", "{", 0, 0)
	f.Fuzz(func(t *testing.T, title, reason, labels string, sev, events int) {
		now := time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)
		in := &store.Incident{ID: 7, Title: title, Reason: reason, Labels: labels, Severity: sev, Events: events,
			State: store.IncidentOpen, OpenedAt: now.Add(-time.Minute), AckedBy: reason, SilencedBy: title}
		for _, state := range []string{store.IncidentOpen, store.IncidentResolved, store.IncidentNotice} {
			in.State = state
			checkMessage(t, render.RenderLimit(2000, renderIncident(in, now)))
		}
		checkMessage(t, render.RenderLimit(2000, renderSummary([]store.Incident{*in}, now)))
	})
}

// checkMessage fails on an oversized message, invalid UTF-8, or any tag
// but ours, or one with attributes: escaping let markup through.
func checkMessage(t *testing.T, m render.Message) {
	t.Helper()
	if len(m.HTML) > 2000 || len(m.Plain) > 2000 || !utf8.ValidString(m.HTML) {
		t.Fatalf("bad size or encoding: %d %d", len(m.HTML), len(m.Plain))
	}
	z := html.NewTokenizer(strings.NewReader(m.HTML))
	for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
		if tt == html.StartTagToken {
			name, attrs := z.TagName()
			switch string(name) {
			case "strong", "em", "code", "pre", "ul", "li", "br":
			default:
				t.Fatalf("unexpected tag %q", name)
			}
			if attrs {
				t.Fatalf("tag with attributes in %q", m.HTML)
			}
		}
	}
}
