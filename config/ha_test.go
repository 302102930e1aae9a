package config

import (
	"slices"
	"strings"
	"testing"
)

const haBase = `
[s3]
endpoint = "http://127.0.0.1:3900"
bucket = "vigie"
[ha]
enabled = true
`

func TestHAProblems(t *testing.T) {
	path := writeConfig(t, t.TempDir(), haBase+`instance = "a"
session_ttl = "5s"
lock_delay = "2m"
lock_key = "/vigie/leader"
replicate_interval = "100ms"
`)
	_, err := load(path, env())
	got := map[string]int{}
	for _, p := range problems(t, err) {
		got[p.Key] = p.Line
	}
	want := map[string]int{"ha.session_ttl": 8, "ha.lock_delay": 9, "ha.lock_key": 10, "ha.replicate_interval": 11}
	for k, line := range want {
		if got[k] != line {
			t.Errorf("%s: want a problem at line %d, got problems %v", k, line, got)
		}
	}
}

func TestHANeedsS3(t *testing.T) {
	path := writeConfig(t, t.TempDir(), "[ha]\nenabled = true\ninstance = \"a\"\n")
	_, err := load(path, env())
	ps := problems(t, err)
	if len(ps) != 1 || ps[0].Key != "ha.enabled" || !strings.Contains(ps[0].Msg, "[s3]") {
		t.Fatalf("want one problem on ha.enabled naming [s3], got %v", ps)
	}
}

func TestHADefaultsFromExample(t *testing.T) {
	c, err := load("../config.example.toml", env("VIGIE_LDAP_BIND_PASSWORD", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	// The shipped takeover bound: 2 TTLs of Consul's invalidation plus the
	// lock delay must leave room for a restore within 30 s.
	if worst := 2*c.HA.SessionTTL.Duration + c.HA.LockDelay.Duration; worst > 25e9 {
		t.Fatalf("default takeover bound %s exceeds 25s", worst)
	}
	if c.HA.Enabled || c.HA.Instance == "" || c.HA.LockKey != "vigie/leader" {
		t.Fatalf("example [ha]: %+v", c.HA)
	}
}

func TestFingerprintDiff(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/token-a", "secret-one")
	writeFile(t, dir+"/token-b", "secret-two")
	load2 := func(top, instance, rest string) map[string]string {
		t.Helper()
		path := writeConfig(t, dir, top+haBase+instance+rest)
		c, err := load(path, env())
		if err != nil {
			t.Fatal(err)
		}
		fp := c.Fingerprint()
		for _, v := range fp {
			if strings.Contains(v, "secret-") {
				t.Fatalf("a secret in the fingerprint: %v", fp)
			}
		}
		return fp
	}
	a := load2("data_dir = \"/a\"\n", "instance = \"a\"\n", "[nomad]\ntoken_file = \""+dir+"/token-a\"\n[alerts]\nroom_cap = 10\n")
	// Instance keys (name, data dir, secret file paths) may differ.
	same := load2("data_dir = \"/b\"\n", "instance = \"b\"\n", "[nomad]\ntoken_file = \""+dir+"/token-a\"\n[alerts]\nroom_cap = 10\n")
	if d := FingerprintDiff(a, same); len(d) != 0 {
		t.Fatalf("instance keys differ only, got %v", d)
	}
	other := load2("", "instance = \"c\"\n", "[nomad]\ntoken_file = \""+dir+"/token-b\"\n[alerts]\nroom_cap = 11\n[[alerts.rooms]]\nroom = \"!r:x\"\n")
	want := []string{"alerts.room_cap", "alerts.rooms.count", "alerts.rooms[0].checks", "alerts.rooms[0].jobs", "alerts.rooms[0].min_severity",
		"alerts.rooms[0].namespaces", "alerts.rooms[0].nodes", "alerts.rooms[0].room", "alerts.rooms[0].services", "nomad.token"}
	if d := FingerprintDiff(a, other); !slices.Equal(d, want) {
		t.Fatalf("diff:\n got %v\nwant %v", d, want)
	}
}
