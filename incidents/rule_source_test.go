package incidents

import (
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

func sightEvent(typ string, s watchers.Sight) watchers.Event {
	return watchers.Event{Source: "nomad", Topic: watchers.TopicSight, Type: typ, Time: s.Since, Sight: &s}
}

// A blind source is a critical incident in every alert room, whatever its
// filters (a room for one job is blind to it too); seeing again resolves
// it; a rewound history is a notice.
func TestSourceIncidentsReachEveryRoom(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Rules = []Rule{SourceBlind{Severity: Critical}, SourceRewound{Severity: Warning}}
		c.Routes = []Route{
			{Transport: "test", Room: "!web", Jobs: []string{"web*"}, Services: []string{"web"}},
			{Transport: "test", Room: "!pager", MinSeverity: Critical},
		}
	})
	since := time.Date(2026, 11, 26, 12, 3, 0, 0, time.UTC)
	blind := watchers.Sight{Source: "Nomad", Address: "http://10.0.0.1:4646", Since: since,
		Reason: "dial tcp 10.0.0.1:4646: connect: connection refused"}
	f.consume(sightEvent(watchers.SightBlind, blind))
	for _, room := range []string{"!web", "!pager"} {
		roots, _, _ := f.messages(room)
		if len(roots) != 1 || !strings.Contains(roots[0].Plain, "🔴 CRITICAL · Vigie cannot see Nomad since 12:03 UTC") ||
			!strings.Contains(roots[0].Plain, "connection refused (http://10.0.0.1:4646)") {
			t.Fatalf("%s: %d messages %v", room, len(roots), roots)
		}
	}

	f.clock.Advance(time.Minute)
	f.consume(sightEvent(watchers.SightSeeing, watchers.Sight{Source: "Nomad", Address: blind.Address, Since: f.clock.Now()}))
	if in := f.incident("sight/nomad"); in.State != store.IncidentResolved || in.Resolution != "Vigie sees Nomad again" {
		t.Fatalf("after seeing again: %+v", in)
	}

	f.consume(sightEvent(watchers.SightRewound, watchers.Sight{Source: "Nomad", Address: blind.Address, Since: f.clock.Now(), From: 66, To: 12}))
	roots, _, _ := f.messages("!web")
	if last := roots[len(roots)-1].Plain; !strings.Contains(last, "Nomad's history restarted at index 12; resuming from there") ||
		!strings.Contains(last, "up to index 66") {
		t.Fatalf("rewound notice:\n%s", last)
	}
	if roots, _, _ := f.messages("!pager"); len(roots) != 1 {
		t.Fatalf("the warning notice reached the critical-only room: %d messages", len(roots))
	}
}

// A source that leaves part of its state out is a warning in every room,
// resolved when it shows everything again; the other Sight news is not
// its business.
func TestSourcePartial(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Rules = []Rule{SourcePartial{Severity: Warning}}
		c.Routes = []Route{{Transport: "test", Room: "!web", Jobs: []string{"web*"}}}
	})
	at := time.Date(2026, 11, 26, 12, 3, 0, 0, time.UTC)
	partial := watchers.Sight{Source: "Consul", Address: "http://10.0.0.2:8500", Since: at,
		Reason: "Consul leaves out the health checks the token may not read (ACL)"}
	f.consume(watchers.Event{Source: "consul", Topic: watchers.TopicSight, Type: watchers.SightBlind, Sight: &partial})
	if roots, _, _ := f.messages("!web"); len(roots) != 0 {
		t.Fatalf("fired on blindness: %v", roots)
	}
	f.consume(watchers.Event{Source: "consul", Topic: watchers.TopicSight, Type: watchers.SightPartial, Sight: &partial})
	roots, _, _ := f.messages("!web")
	if len(roots) != 1 || !strings.Contains(roots[0].Plain, "WARNING · Vigie sees only part of Consul") ||
		!strings.Contains(roots[0].Plain, "may not read (ACL) (http://10.0.0.2:8500)") {
		t.Fatalf("messages %v", roots)
	}
	whole := watchers.Sight{Source: "Consul", Address: partial.Address, Since: at.Add(time.Minute)}
	f.consume(watchers.Event{Source: "consul", Topic: watchers.TopicSight, Type: watchers.SightWhole, Sight: &whole})
	if in := f.incident("sight/consul/partial"); in.State != store.IncidentResolved || in.Resolution != "Vigie sees all of Consul again" {
		t.Fatalf("after whole: %+v", in)
	}
}
