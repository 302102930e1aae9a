package commands

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigie/vigie/incidents"
	"github.com/vigie/vigie/render"
)

// Silence mutes incidents matching label globs for a while.
type Silence struct {
	Book        IncidentBook
	MaxDuration time.Duration // the longest silence; 0: 30 days
}

// defaultMaxSilence is the longest silence when none is configured.
const defaultMaxSilence = 30 * 24 * time.Hour

// Spec implements Handler.
func (s *Silence) Spec() Spec {
	return Spec{Name: "silence", Access: State, Summary: "mute matching incidents for a while",
		Usage: "<label=glob>... <duration> [reason] | #<incident>",
		Help: "Incidents whose labels match every label=glob are not posted while the silence lasts (open ones are marked). " +
			"Labels: " + strings.Join(incidents.MatcherLabels, ", ") + ". Example: silence job=web* node=worker-3 2h kernel upgrade. " +
			"silence #12 silences one incident until it resolves, as reacting 🔇 to its message does.",
		MinArgs: 1, MaxArgs: -1, Options: incidents.MatcherLabels}
}

// Run implements Handler.
func (s *Silence) Run(ctx context.Context, req *Request) (render.Node, error) {
	if len(req.Options) == 0 && len(req.Args) == 1 && strings.HasPrefix(req.Args[0], "#") {
		id, err := parseID("an incident", req.Args[0])
		if err != nil {
			return render.Node{}, err
		}
		in, err := s.Book.SilenceIncident(ctx, id, req.Sender)
		if err != nil {
			return render.Node{}, err
		}
		return render.Text("🔇 Silenced " + incidentLine(in) + " until it resolves"), nil
	}
	if len(req.Options) == 0 {
		return render.Node{}, Usagef("say what to silence with at least one label=glob, e.g. job=web, or an incident, e.g. #12")
	}
	labels := make([]string, 0, len(req.Options))
	for l := range req.Options {
		labels = append(labels, l)
	}
	slices.Sort(labels)
	ms := make([]incidents.Matcher, len(labels))
	for i, l := range labels {
		ms[i] = incidents.Matcher{Label: l, Glob: req.Options[l]}
	}
	// Round-trip through the parser: it checks globs as stored silences are.
	ms, err := incidents.ParseMatchers(incidents.FormatMatchers(ms))
	if err != nil {
		return render.Node{}, Usagef("%v", err)
	}
	d, err := parseDuration(req.Args[0])
	if err != nil {
		return render.Node{}, err
	}
	longest := cmp.Or(s.MaxDuration, defaultMaxSilence)
	if d > longest {
		return render.Node{}, Usagef("a silence lasts %s at most (policy.max_silence); to mute one incident until it resolves, silence #<incident>", shortDuration(longest))
	}
	reason := strings.Join(req.Args[1:], " ")
	sil, err := s.Book.AddSilence(ctx, ms, d, reason, req.Sender)
	if err != nil {
		return render.Node{}, err
	}
	msg := fmt.Sprintf("🔇 Silence #%d: %s until %s", sil.ID, incidents.FormatMatchers(ms), sil.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"))
	if reason != "" {
		msg += " (" + reason + ")"
	}
	return render.Text(msg), nil
}
