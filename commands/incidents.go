package commands

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/vigie/vigie/incidents"
	"github.com/vigie/vigie/store"
)

// IncidentBook is what the alert commands need from the incident engine.
type IncidentBook interface {
	Live(ctx context.Context) ([]store.Incident, error)
	Acknowledge(ctx context.Context, id int64, who string) (store.Incident, error)
	SilenceIncident(ctx context.Context, id int64, who string) (store.Incident, error)
	AddSilence(ctx context.Context, ms []incidents.Matcher, d time.Duration, reason, who string) (store.Silence, error)
	EndSilence(ctx context.Context, id int64) error
	Silences(ctx context.Context) ([]store.Silence, error)
}

// parseID reads an incident or silence ID, with or without '#'.
func parseID(what, s string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || id <= 0 {
		return 0, Usagef("%q is not %s number (e.g. 12 or #12)", s, what)
	}
	return id, nil
}

// parseDuration accepts Go durations plus days ("2d"); a number of days
// too large for a duration is refused rather than wrapped around.
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 {
			if int64(n) > math.MaxInt64/int64(24*time.Hour) {
				return 0, Usagef("%q is too long a duration", s)
			}
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, Usagef("%q is not a duration (e.g. 30m, 2h, 1d)", s)
	}
	return d, nil
}

// since says how long ago t was, at now.
func since(t, now time.Time) string {
	d := now.Sub(t).Round(time.Minute)
	if d < time.Minute {
		return "just now"
	}
	return strings.TrimSuffix(d.String(), "0s") + " ago"
}

func incidentLine(in store.Incident) string {
	return fmt.Sprintf("#%d %s %s", in.ID, strings.ToUpper(incidents.Severity(in.Severity).String()), in.Title)
}
