package backups

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// backupAt is a good backup started at t.
func backupAt(t time.Time) *Backup {
	id := backupID("db", t)
	return &Backup{ID: id, Key: id + manifestSuffix, Manifest: &Manifest{ID: id, Started: t, Ended: t.Add(time.Minute)}}
}

func kept(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		if d.Keep {
			out = append(out, d.Backup.ID[len("db-"):])
		}
	}
	return out
}

// Grandfather-father-son over 90 days of daily backups (two on some days).
func TestPrunePlanKeepsGFS(t *testing.T) {
	start := time.Date(2026, 9, 1, 3, 30, 0, 0, time.UTC) // a Tuesday
	var backups []*Backup
	for d := range 90 {
		backups = append(backups, backupAt(start.AddDate(0, 0, d)))
		if d%10 == 0 {
			backups = append(backups, backupAt(start.AddDate(0, 0, d).Add(12*time.Hour)))
		}
	}
	ds := prunePlan(backups, Retention{Last: 3, Daily: 7, Weekly: 4, Monthly: 3})
	got := kept(ds)
	want := []string{
		// last 3 and 7 days: the newest of each day (day 89 back to 83)
		"20261129T033000Z", "20261128T033000Z", "20261127T033000Z", "20261126T033000Z", "20261125T033000Z",
		"20261124T033000Z", "20261123T033000Z",
		// weekly: the newest of the 3 ISO weeks before (Sundays)
		"20261122T033000Z", "20261115T033000Z", "20261108T033000Z",
		// monthly: October's and September's newest (November's is the
		// newest); October 31st has two backups, the later one counts
		"20261031T153000Z", "20260930T033000Z",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("kept %v\nwant %v", got, want)
	}
	if len(ds) != len(backups) {
		t.Fatalf("%d decisions for %d backups", len(ds), len(backups))
	}
	for _, d := range ds {
		if d.Backup.ID == "db-20261129T033000Z" && !strings.Contains(d.Why, "newest") {
			t.Fatalf("the newest is kept as %q", d.Why)
		}
		if !d.Keep && !strings.HasPrefix(d.Why, "beyond last 3") {
			t.Fatalf("dropped as %q", d.Why)
		}
	}
}

// The newest good backup stays whatever the retention says; broken ones
// are never deleted by retention; nothing at all is not a problem.
func TestPrunePlanSafety(t *testing.T) {
	now := time.Date(2026, 11, 30, 3, 30, 0, 0, time.UTC)
	broken := &Backup{ID: "db-20261201T000000Z", Broken: "manifest is not valid JSON"}
	old := backupAt(now.AddDate(0, 0, -2))
	newest := backupAt(now)
	ds := prunePlan([]*Backup{old, broken, newest}, Retention{})
	if got := kept(ds); !slices.Equal(got, []string{"20261201T000000Z", "20261130T033000Z"}) {
		t.Fatalf("kept %v", got)
	}
	if len(prunePlan(nil, Retention{Last: 3})) != 0 {
		t.Fatal("decisions without backups")
	}
}

func TestMissedSlots(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		spec      string
		last, now string
		want      bool
	}{
		{"30 3 * * *", "2026-11-29T03:30:00Z", "2026-11-30T03:29:00Z", false}, // not due yet
		{"30 3 * * *", "2026-11-29T03:30:00Z", "2026-11-30T09:00:00Z", true},  // due at 03:30, Vigie was down
		{"30 3 * * *", "2026-11-25T03:30:00Z", "2026-11-30T09:00:00Z", true},  // five missed: one catch-up
		{"30 3 * * *", "", "2026-11-30T09:00:00Z", false},                     // never ran: nothing missed
		{"@every 6h", "2026-11-30T00:00:00Z", "2026-11-30T07:00:00Z", true},
		{"CRON_TZ=Europe/Paris 30 4 * * *", "2026-11-29T03:30:00Z", "2026-11-30T03:29:00Z", false}, // 04:30 in Paris is 03:30 UTC
		{"CRON_TZ=Europe/Paris 30 4 * * *", "2026-11-29T03:30:00Z", "2026-11-30T03:31:00Z", true},
		{"", "2026-11-29T03:30:00Z", "2026-12-30T03:31:00Z", false},
	} {
		var last time.Time
		if c.last != "" {
			last = at(c.last)
		}
		if got := missed(c.spec, last, at(c.now)); got != c.want {
			t.Errorf("missed(%q, %s, %s) = %v", c.spec, c.last, c.now, got)
		}
	}
}

func TestFind(t *testing.T) {
	a, b := backupAt(time.Date(2026, 11, 29, 3, 30, 0, 0, time.UTC)), backupAt(time.Date(2026, 11, 30, 3, 30, 0, 0, time.UTC))
	broken := &Backup{ID: "db-20261201T033000Z", Broken: "x"}
	list := []*Backup{a, b, broken}
	for id, want := range map[string]string{"": b.ID, "20261129T033000Z": a.ID, "db-20261130T033000Z": b.ID, "db-20261201": broken.ID} {
		got, err := find(list, id)
		if err != nil || got.ID != want {
			t.Errorf("find(%q) = %v %v, want %s", id, got, err, want)
		}
	}
	for id, want := range map[string]string{"db-2026": "matches 3 backups", "nope": `no backup "nope"`} {
		if _, err := find(list, id); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("find(%q): %v", id, err)
		}
	}
	if _, err := find([]*Backup{broken}, ""); err == nil {
		t.Error("a broken backup counted as the newest good one")
	}
}
