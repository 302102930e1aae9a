package replica

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const sampleKey = "vigie/ha/state/00000000000000000042-00000000000000000007.manifest.json"

func sampleManifest() Manifest {
	return Manifest{Format: ManifestFormat, Term: 42, Seq: 7, Object: "00000000000000000042-00000000000000000007.db.zst",
		Instance: "vigie-a", SchemaVersion: 9, SHA256: strings.Repeat("ab", 32), Size: 143360, CompressedSize: 2863,
		Created: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), ConfigFingerprint: "sha256:cafe"}
}

func TestParseManifest(t *testing.T) {
	good, _ := json.Marshal(sampleManifest())
	m, err := ParseManifest(good, sampleKey)
	if err != nil || m != sampleManifest() {
		t.Fatalf("%+v, %v", m, err)
	}
	bad := map[string]func(m *Manifest){
		"format 2":                   func(m *Manifest) { m.Format = 2 },
		"do not match its name":      func(m *Manifest) { m.Seq = 8 },
		"object":                     func(m *Manifest) { m.Object = "../../other.db.zst" },
		"schema version 0":           func(m *Manifest) { m.SchemaVersion = 0 },
		"is not 64 lowercase hex":    func(m *Manifest) { m.SHA256 = strings.Repeat("AB", 32) },
		"not that of a SQLite":       func(m *Manifest) { m.Size = 1000 },
		"compressed size 0":          func(m *Manifest) { m.CompressedSize = 0 },
		"no creation time":           func(m *Manifest) { m.Created = time.Time{} },
		"no instance":                func(m *Manifest) { m.Instance = "" },
		"sha256 \"zz":                func(m *Manifest) { m.SHA256 = strings.Repeat("z", 64) },
		"term and seq start at 1":    func(m *Manifest) { m.Term, m.Seq, m.Object = 0, 0, id{}.String()+dataSuffix },
		"not <term>-<seq>":           nil, // the key
		"is not valid JSON":          nil,
		"larger than 64 KiB":         nil,
		"do not match its name 0000": nil,
	}
	for want, change := range bad {
		data, key := good, sampleKey
		switch want {
		case "not <term>-<seq>":
			key = "vigie/ha/state/42-7.manifest.json"
		case "is not valid JSON":
			data = append([]byte("x"), good...)
		case "larger than 64 KiB":
			data = []byte(`{"instance":"` + strings.Repeat("a", 70<<10) + `"}`)
		case "do not match its name 0000":
			key = "vigie/ha/state/00000000000000000042-00000000000000000008.manifest.json"
		default:
			m := sampleManifest()
			change(&m)
			data, _ = json.Marshal(m)
		}
		if _, err := ParseManifest(data, key); err == nil || !strings.Contains(err.Error(), strings.TrimSuffix(want, " 0000")) {
			t.Errorf("%s: %v", want, err)
		}
	}
	// Trailing data is refused; unknown fields (a later Vigie's) are not.
	if _, err := ParseManifest(append(good, []byte(`{}`)...), sampleKey); err == nil {
		t.Error("trailing data accepted")
	}
	extra := strings.Replace(string(good), `{`, `{"later_field":true,`, 1)
	if _, err := ParseManifest([]byte(extra), sampleKey); err != nil {
		t.Errorf("unknown field: %v", err)
	}
}

func TestLayout(t *testing.T) {
	for _, c := range []struct{ prefix, dir string }{{"vigie", "vigie/ha/state/"}, {"vigie/", "vigie/ha/state/"}, {"", "ha/state/"}} {
		if l := newLayout(c.prefix); l.dir != c.dir {
			t.Errorf("prefix %q: dir %q, want %q", c.prefix, l.dir, c.dir)
		}
	}
	l := newLayout("vigie/")
	i := id{18446744073709551615, 1}
	for key, manifest := range map[string]bool{l.data(i): false, l.manifest(i): true} {
		got, isManifest, ok := l.parseKey(key)
		if !ok || got != i || isManifest != manifest {
			t.Errorf("parseKey(%s) = %v %v %v", key, got, isManifest, ok)
		}
	}
	for _, key := range []string{
		"vigie/ha/state/README", "other/ha/state/00000000000000000001-00000000000000000001.db.zst",
		"vigie/ha/state/0000000000000000001-000000000000000000001.db.zst", "vigie/ha/state/+0000000000000000001-00000000000000000001.db.zst",
		"vigie/ha/state/99999999999999999999-00000000000000000001.db.zst", // beyond uint64
		"vigie/ha/state/00000000000000000001-00000000000000000001.db",
	} {
		if _, _, ok := l.parseKey(key); ok {
			t.Errorf("parseKey(%s) accepted", key)
		}
	}
	if !(id{1, 9}).less(id{2, 1}) || (id{2, 1}).less(id{1, 9}) || !(id{2, 1}).less(id{2, 2}) {
		t.Error("ids do not order by term, then seq")
	}
}

// Manifests come from a bucket others can write to: whatever they hold,
// parsing returns a manifest or an error, never panics, and a manifest it
// accepts is one Restore can rely on, and reads back the same.
func FuzzManifest(f *testing.F) {
	good, _ := json.Marshal(sampleManifest())
	f.Add(good, sampleKey)
	f.Add([]byte(`{"format": 2}`), sampleKey)
	f.Add([]byte(`not json`), "vigie/ha/state/x.manifest.json")
	f.Add([]byte(`{"format":1,"term":1e30}`), sampleKey)
	f.Fuzz(func(t *testing.T, data []byte, key string) {
		m, err := ParseManifest(data, key)
		if err != nil {
			return
		}
		i, ok := parseID(strings.TrimSuffix(key[strings.LastIndex(key, "/")+1:], manifestSuffix))
		if !ok || i != (id{m.Term, m.Seq}) || m.Term == 0 || m.Seq == 0 || m.Object != i.String()+dataSuffix ||
			len(m.SHA256) != 64 || m.Size < 512 || m.Size%512 != 0 || m.CompressedSize < 1 || m.SchemaVersion < 1 ||
			m.Instance == "" || m.Created.IsZero() {
			t.Fatalf("accepted %+v from %s", m, key)
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseManifest(again, key)
		if err != nil || m2.Term != m.Term || m2.Seq != m.Seq || m2.SHA256 != m.SHA256 || m2.Size != m.Size || !m2.Created.Equal(m.Created) {
			t.Fatalf("accepted %+v, then %+v, %v once written back", m, m2, err)
		}
	})
}
