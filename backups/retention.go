package backups

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Retention says which good backups a target keeps (grandfather, father,
// son): the newest Last, and the newest of each of the last Daily days,
// Weekly ISO weeks and Monthly months that have one (UTC). A backup kept
// by any of them stays.
type Retention struct {
	Last, Daily, Weekly, Monthly int
}

func (r Retention) String() string {
	return fmt.Sprintf("last %d, daily %d, weekly %d, monthly %d", r.Last, r.Daily, r.Weekly, r.Monthly)
}

// Decision is what pruning does with one backup, and why.
type Decision struct {
	Backup *Backup
	Keep   bool
	Why    string // "newest", "last 3", "daily 2026-11-29", ...; for broken ones what is wrong
}

// prunePlan decides over a target's backups. Only good backups are
// deleted; the newest good one is always kept; broken ones are listed as
// kept (an operator decides about those).
func prunePlan(backups []*Backup, r Retention) []Decision {
	good := make([]*Backup, 0, len(backups))
	var out []Decision
	for _, b := range backups {
		if b.Broken != "" {
			out = append(out, Decision{Backup: b, Keep: true, Why: "broken, left for an operator: " + b.Broken})
			continue
		}
		good = append(good, b)
	}
	slices.SortFunc(good, func(a, b *Backup) int { return b.Manifest.Started.Compare(a.Manifest.Started) }) // newest first
	why := map[*Backup][]string{}
	if len(good) > 0 {
		why[good[0]] = append(why[good[0]], "newest")
	}
	for i, b := range good {
		if i < r.Last {
			why[b] = append(why[b], fmt.Sprintf("last %d", r.Last))
		}
	}
	bucket := func(n int, label string, key func(time.Time) string) {
		seen := map[string]bool{}
		for _, b := range good {
			k := key(b.Manifest.Started.UTC())
			if seen[k] || len(seen) >= n {
				continue
			}
			seen[k] = true // the newest of its period
			why[b] = append(why[b], label+" "+k)
		}
	}
	bucket(r.Daily, "daily", func(t time.Time) string { return t.Format("2006-01-02") })
	bucket(r.Weekly, "weekly", func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) })
	bucket(r.Monthly, "monthly", func(t time.Time) string { return t.Format("2006-01") })
	for _, b := range good {
		if reasons := why[b]; len(reasons) > 0 {
			out = append(out, Decision{Backup: b, Keep: true, Why: strings.Join(reasons, ", ")})
		} else {
			out = append(out, Decision{Backup: b, Why: "beyond " + r.String()})
		}
	}
	slices.SortFunc(out, func(a, b Decision) int { return b.Backup.started().Compare(a.Backup.started()) })
	return out
}
