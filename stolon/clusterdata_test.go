package stolon

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vigie/vigie/internal/fakeconsul"
)

// capMaster is the master (keeper, db) of each captured state, as the
// capture README says.
func capMaster(name string) (keeper, db string, ok bool) {
	switch name {
	case "normal", "standby-down", "lagging", "lagging-walrcv-stopped", "sync", "no-sentinel", "proxy-down":
		return "keeper0", "d51919e0", true
	case "failover", "no-eligible-standby": // after the first failover; no-eligible-standby kept it
		return "keeper1", "0e651c76", true
	case "no-eligible-standby-replaypaused": // Stolon failed over anyway, to keeper0's new db
		return "keeper0", "476ec92d", true
	}
	if n, found := strings.CutPrefix(name, "failover-"); found && len(n) == 2 {
		if n < "06" { // the new master from failover-06 on
			return "keeper0", "d51919e0", true
		}
		return "keeper1", "0e651c76", true
	}
	return "", "", false
}

func TestParseClusterDataCaptures(t *testing.T) {
	t.Parallel()
	states := fakeconsul.StolonStates()
	if len(states) < 30 {
		t.Fatalf("only %d captured states: %v", len(states), states)
	}
	for _, name := range states {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			wantKeeper, wantDB, ok := capMaster(name)
			if !ok {
				t.Fatalf("no expectation for the captured state %q: add it to capMaster", name)
			}
			cd, err := ParseClusterData(capClusterData(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if cd.FormatVersion != 1 || cd.Cluster.UID != "626a42c3" || cd.Cluster.Status.Phase != "normal" || cd.ChangeTime.IsZero() {
				t.Errorf("format %d, cluster %q, phase %q, changeTime %v", cd.FormatVersion, cd.Cluster.UID, cd.Cluster.Status.Phase, cd.ChangeTime)
			}
			if got := cd.KeeperUIDs(); !slices.Equal(got, []string{"keeper0", "keeper1"}) {
				t.Errorf("keepers %v", got)
			}
			for uid, k := range cd.Keepers {
				if k.UID != uid {
					t.Errorf("keeper %s has uid %q", uid, k.UID)
				}
			}
			m := cd.MasterDB()
			if m == nil || m.UID != wantDB || cd.Cluster.Status.Master != wantDB {
				t.Fatalf("master db %v (status.master %q), want %s", m, cd.Cluster.Status.Master, wantDB)
			}
			if cd.MasterKeeper() != wantKeeper || m.Spec.Role != "master" {
				t.Errorf("master keeper %q role %q, want %s master", cd.MasterKeeper(), m.Spec.Role, wantKeeper)
			}
			if db := cd.DBOf(wantKeeper); db != m {
				t.Errorf("DBOf(%s) = %v, want the master db", wantKeeper, db)
			}
			if cd.DBOf("keeper9") != nil {
				t.Error("DBOf an unknown keeper is not nil")
			}
			if m.Status.ListenAddress != "127.0.0.1" || (m.Status.Port != "25433") != (wantKeeper == "keeper1") {
				t.Errorf("master address %s", m.Address())
			}
			if m.Status.XLogPos == 0 || m.Status.TimelineID == 0 {
				t.Errorf("master xLogPos %d timeline %d", m.Status.XLogPos, m.Status.TimelineID)
			}
			if sync := name == "sync"; cd.Cluster.Spec.SynchronousReplication != sync {
				t.Errorf("synchronousReplication %v", cd.Cluster.Spec.SynchronousReplication)
			}
			if got := cd.Cluster.Spec.MaxLag(); got != 1232896 {
				t.Errorf("maxStandbyLag %d, want Stolon's default 1232896", got)
			}
		})
	}
}

func TestClusterDataDetails(t *testing.T) {
	t.Parallel()
	cd, err := ParseClusterData(capClusterData(t, "normal"))
	if err != nil {
		t.Fatal(err)
	}
	m := cd.MasterDB()
	if m.Address() != "127.0.0.1:25433" || !m.Converged() || m.Generation != 3 || !m.Status.Healthy || m.Status.XLogPos != 50709824 {
		t.Errorf("master %s converged %v generation %d healthy %v xLogPos %d", m.Address(), m.Converged(), m.Generation, m.Status.Healthy, m.Status.XLogPos)
	}
	s := cd.DBs["0e651c76"]
	if s.Spec.Role != "standby" || s.Spec.FollowConfig == nil || s.Spec.FollowConfig.DBUID != "d51919e0" || s.Spec.FollowConfig.Type != "internal" {
		t.Errorf("standby spec %+v", s.Spec)
	}
	if !slices.Equal(m.Spec.Followers, []string{"0e651c76"}) {
		t.Errorf("followers %v", m.Spec.Followers)
	}
	if k := cd.Keepers["keeper1"]; !k.Status.Healthy || k.Status.CanBeMaster == nil || !*k.Status.CanBeMaster || k.Status.ForceFail || k.Status.LastHealthyTime.IsZero() {
		t.Errorf("keeper1 status %+v", k.Status)
	}
	if cd.Proxy.Generation != 2 || cd.Proxy.Spec.MasterDBUID != "d51919e0" || !slices.Equal(cd.Proxy.Spec.EnabledProxies, []string{"5a6b1224"}) {
		t.Errorf("proxy %+v", cd.Proxy)
	}

	sync, err := ParseClusterData(capClusterData(t, "sync"))
	if err != nil {
		t.Fatal(err)
	}
	sm := sync.MasterDB()
	if !slices.Equal(sm.Spec.SynchronousStandbys, []string{"0e651c76"}) || !slices.Equal(sm.Status.SynchronousStandbys, []string{"0e651c76"}) {
		t.Errorf("sync master: spec %v status %v", sm.Spec.SynchronousStandbys, sm.Status.SynchronousStandbys)
	}

	down, err := ParseClusterData(capClusterData(t, "standby-down"))
	if err != nil {
		t.Fatal(err)
	}
	if down.Keepers["keeper1"].Status.Healthy || down.DBs["0e651c76"].Status.Healthy {
		t.Error("standby-down: keeper1 or its db healthy (Stolon omits healthy when false)")
	}
}

func TestClusterSpecDefaults(t *testing.T) {
	t.Parallel()
	u16 := func(n uint16) *uint16 { return &n }
	u32 := func(n uint32) *uint32 { return &n }
	tests := []struct {
		spec    ClusterSpec
		maxLag  uint64
		minSync int
	}{
		{ClusterSpec{}, 1024 * 1204, 0},
		{ClusterSpec{MaxStandbyLag: u32(0)}, 0, 0},
		{ClusterSpec{MaxStandbyLag: u32(1 << 31)}, 1 << 31, 0},
		{ClusterSpec{SynchronousReplication: true}, 1024 * 1204, 1},
		{ClusterSpec{SynchronousReplication: true, MinSynchronousStandbys: u16(2)}, 1024 * 1204, 2},
		{ClusterSpec{SynchronousReplication: false, MinSynchronousStandbys: u16(2)}, 1024 * 1204, 0},
	}
	for _, tt := range tests {
		if got := tt.spec.MaxLag(); got != tt.maxLag {
			t.Errorf("%+v: MaxLag() = %d, want %d", tt.spec, got, tt.maxLag)
		}
		if got := tt.spec.MinSync(); got != tt.minSync {
			t.Errorf("%+v: MinSync() = %d, want %d", tt.spec, got, tt.minSync)
		}
	}
}

func TestParseClusterDataFormatVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		doc     string
		version int
	}{
		{`{}`, 0},
		{`null`, 0},
		{`{"formatVersion":0,"cluster":{"status":{"phase":"normal"}}}`, 0},
		{`{"formatVersion":2,"keepers":{}}`, 2},
		{`{"formatVersion":-1}`, -1},
		{`{"formatVersion":100}`, 100},
	}
	for _, tt := range tests {
		cd, err := ParseClusterData([]byte(tt.doc))
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Errorf("%s: %v, %v; want a *FormatError", tt.doc, cd, err)
			continue
		}
		if fe.Version != tt.version || cd != nil {
			t.Errorf("%s: version %d (data %v), want %d", tt.doc, fe.Version, cd, tt.version)
		}
		if msg := err.Error(); !strings.Contains(msg, "formatVersion "+itoa(tt.version)) || !strings.Contains(msg, "format 1 only") {
			t.Errorf("%s: message %q", tt.doc, msg)
		}
	}
	// A real document with another version.
	doc := capDecode(t, capClusterData(t, "normal"))
	doc["formatVersion"] = 2
	_, err := ParseClusterData(mustJSON(t, doc))
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Version != 2 {
		t.Errorf("normal with formatVersion 2: %v", err)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestParseClusterDataCorrupt(t *testing.T) {
	t.Parallel()
	normal := capClusterData(t, "normal")
	tests := []struct{ name, doc string }{
		{"empty", ``},
		{"truncated", string(normal[:len(normal)/2])},
		{"trailing garbage", string(normal) + "}"},
		{"two documents", `{"formatVersion":1}{"formatVersion":1}`},
		{"not an object", `[1,2]`},
		{"text", `stolon`},
		{"formatVersion as a string", `{"formatVersion":"1"}`},
		{"xLogPos negative", `{"formatVersion":1,"dbs":{"d":{"status":{"xLogPos":-1}}}}`},
		{"xLogPos a float", `{"formatVersion":1,"dbs":{"d":{"status":{"xLogPos":1.5}}}}`},
		{"keepers an array", `{"formatVersion":1,"keepers":[]}`},
		{"a bad time", `{"formatVersion":1,"changeTime":"yesterday"}`},
	}
	for _, tt := range tests {
		cd, err := ParseClusterData([]byte(tt.doc))
		if err == nil {
			t.Errorf("%s: parsed: %+v", tt.name, cd)
			continue
		}
		var fe *FormatError
		if errors.As(err, &fe) {
			t.Errorf("%s: a format error for what is not JSON of the format: %v", tt.name, err)
		}
		if !strings.Contains(err.Error(), "clusterdata is not valid JSON") {
			t.Errorf("%s: error %q does not say what it read", tt.name, err)
		}
	}
}

// A document Stolon would not write, but which parses: a null keeper or
// db would leave nil entries that every reader dereferences.
func TestParseClusterDataNullEntries(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{
		`{"formatVersion":1,"keepers":{"keeper0":null}}`,
		`{"formatVersion":1,"dbs":{"d":null}}`,
	} {
		cd, err := ParseClusterData([]byte(doc))
		if err == nil {
			t.Errorf("%s: parsed, with nil entries: %+v", doc, cd)
		} else if !strings.Contains(err.Error(), "null") {
			t.Errorf("%s: error %q does not say what is wrong", doc, err)
		}
	}
}

// setForceFail changes keepers.<uid>.status.forceFail and nothing else,
// on every captured document and keeper.
func TestSetForceFailKeepsEverythingElse(t *testing.T) {
	t.Parallel()
	for _, name := range fakeconsul.StolonStates() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data := capClusterData(t, name)
			before, err := ParseClusterData(data)
			if err != nil {
				t.Fatal(err)
			}
			for _, uid := range before.KeeperUIDs() {
				out, err := setForceFail(data, uid)
				if err != nil {
					t.Fatalf("%s: %v", uid, err)
				}
				orig, changed := capDecode(t, data), capDecode(t, out)
				status := capObj(t, changed, "keepers", uid, "status")
				if status["forceFail"] != true {
					t.Fatalf("%s: forceFail %v (%T), want the JSON true", uid, status["forceFail"], status["forceFail"])
				}
				delete(status, "forceFail")
				delete(capObj(t, orig, "keepers", uid, "status"), "forceFail") // failover-02..05 have it already
				if !reflect.DeepEqual(orig, changed) {
					t.Errorf("%s: more than forceFail changed:\nbefore %s\nafter  %s", uid, mustJSON(t, orig), mustJSON(t, changed))
				}

				after, err := ParseClusterData(out)
				if err != nil {
					t.Fatalf("%s: the result does not parse: %v", uid, err)
				}
				for kuid, k := range after.Keepers {
					want := before.Keepers[kuid].Status.ForceFail || kuid == uid
					if k.Status.ForceFail != want {
						t.Errorf("set on %s: keeper %s forceFail %v, want %v", uid, kuid, k.Status.ForceFail, want)
					}
				}
				after.Keepers[uid].Status.ForceFail = before.Keepers[uid].Status.ForceFail
				if !reflect.DeepEqual(before, after) {
					t.Errorf("%s: the typed view changed beyond forceFail", uid)
				}
			}
		})
	}
}

// Numbers are written back as they were read: no float rounding of a
// uint64 and no reformatting of an exponent or trailing zeros.
func TestSetKeeperStatusNumbersVerbatim(t *testing.T) {
	t.Parallel()
	doc := `{"formatVersion":1,"keepers":{"k":{"uid":"k","generation":1e3,"status":{"healthy":true,"lastHealthyTime":"2026-11-30T12:15:18.505307242Z","weight":2.50,"tiny":-1.5E-7,"zero":-0}}},` +
		`"dbs":{"d":{"status":{"xLogPos":18446744073709551615,"timelineID":9007199254740993}}},` +
		`"big":123456789012345678901234567890,"neg":-9223372036854775808,"exp":1E+02,"list":[0.1,1.0,10],"str":"1e3","nested":{"a":[{"b":null}],"c":{}}}`
	out, err := setForceFail([]byte(doc), "k")
	if err != nil {
		t.Fatal(err)
	}
	for _, lit := range []string{
		`"generation":1e3`, `"weight":2.50`, `"tiny":-1.5E-7`, `"zero":-0`,
		`"xLogPos":18446744073709551615`, `"timelineID":9007199254740993`,
		`"big":123456789012345678901234567890`, `"neg":-9223372036854775808`, `"exp":1E+02`,
		`"list":[0.1,1.0,10]`, `"str":"1e3"`, `"nested":{"a":[{"b":null}],"c":{}}`,
		`"lastHealthyTime":"2026-11-30T12:15:18.505307242Z"`, `"forceFail":true`,
	} {
		if !strings.Contains(string(out), lit) {
			t.Errorf("%s is not in the result:\n%s", lit, out)
		}
	}
	cd, err := ParseClusterData(out)
	if err != nil {
		t.Fatal(err)
	}
	if cd.DBs["d"].Status.XLogPos != 1<<64-1 || !cd.Keepers["k"].Status.ForceFail {
		t.Errorf("xLogPos %d forceFail %v", cd.DBs["d"].Status.XLogPos, cd.Keepers["k"].Status.ForceFail)
	}

	// The captures' own numbers, e.g. the Flags-sized systemdID string and
	// the xLogPos, come back as written.
	out, err = setForceFail(capClusterData(t, "normal"), "keeper0")
	if err != nil {
		t.Fatal(err)
	}
	for _, lit := range []string{`"xLogPos":50709824`, `"systemdID":"7713936708885508777"`, `"Maj":15`, `"maxStandbys":20`, `"pgHBA":null`, `"followers":[]`, `"status":{}`} {
		if !strings.Contains(string(out), lit) {
			t.Errorf("normal: %s is not in the result", lit)
		}
	}
}

// Setting false deletes the field, as Stolon writes it (omitempty); a
// set then cleared document reads as the original.
func TestSetKeeperStatusFalseDeletes(t *testing.T) {
	t.Parallel()
	set := capClusterData(t, "failover-02") // forceFail set on keeper0 by stolonctl failkeeper
	if !strings.Contains(string(set), `"forceFail":true`) {
		t.Fatal("failover-02 lacks forceFail")
	}
	cleared, err := setKeeperStatus(set, "keeper0", "forceFail", false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cleared), "forceFail") {
		t.Errorf("forceFail still written:\n%s", cleared)
	}
	want := capDecode(t, set)
	delete(capObj(t, want, "keepers", "keeper0", "status"), "forceFail")
	if got := capDecode(t, cleared); !reflect.DeepEqual(got, want) {
		t.Errorf("clearing changed more than forceFail")
	}

	normal := capClusterData(t, "normal")
	on, err := setForceFail(normal, "keeper1")
	if err != nil {
		t.Fatal(err)
	}
	off, err := setKeeperStatus(on, "keeper1", "forceFail", false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(capDecode(t, off), capDecode(t, normal)) {
		t.Errorf("set then cleared differs from the original")
	}
	// Clearing what is not set is harmless.
	again, err := setKeeperStatus(off, "keeper1", "forceFail", false)
	if err != nil || string(again) != string(off) {
		t.Errorf("clearing twice: %v, changed %v", err, string(again) != string(off))
	}
	// Other values are written as given.
	other, err := setKeeperStatus(normal, "keeper1", "canBeMaster", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := capObj(t, capDecode(t, other), "keepers", "keeper1", "status")["canBeMaster"]; ok {
		t.Error("false canBeMaster written: Stolon reads an absent canBeMaster as true")
	}
}

func TestSetKeeperStatusShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc, keeper string
		err               string // "" for success
	}{
		{"unknown keeper", string(capClusterData(t, "normal")), "keeper9", `clusterdata has no keeper "keeper9"`},
		{"keeper uid differing by case", string(capClusterData(t, "normal")), "Keeper0", `no keeper "Keeper0"`},
		{"no keepers", `{"formatVersion":1}`, "k", `no keeper "k"`},
		{"keepers null", `{"formatVersion":1,"keepers":null}`, "k", `no keeper "k"`},
		{"keepers not an object", `{"formatVersion":1,"keepers":[{"uid":"k"}]}`, "k", `no keeper "k"`},
		{"keeper null", `{"formatVersion":1,"keepers":{"k":null}}`, "k", `no keeper "k"`},
		{"keeper not an object", `{"formatVersion":1,"keepers":{"k":"k"}}`, "k", `no keeper "k"`},
		{"not JSON", `{"formatVersion":1,`, "k", "clusterdata is not valid JSON"},
		{"not an object", `[]`, "k", "clusterdata is not valid JSON"},
		{"keeper without status", `{"formatVersion":1,"keepers":{"k":{"uid":"k","spec":{}}}}`, "k", ""},
		{"status null", `{"formatVersion":1,"keepers":{"k":{"uid":"k","status":null}}}`, "k", ""},
	}
	for _, tt := range tests {
		out, err := setForceFail([]byte(tt.doc), tt.keeper)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %v, want an error saying %q", tt.name, err, tt.err)
			}
			if out != nil {
				t.Errorf("%s: a document with the error", tt.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		cd, err := ParseClusterData(out)
		if err != nil || !cd.Keepers[tt.keeper].Status.ForceFail {
			t.Errorf("%s: %s: %v", tt.name, out, err)
		}
		if k := capObj(t, capDecode(t, out), "keepers", tt.keeper); k["uid"] != "k" {
			t.Errorf("%s: the keeper lost its fields: %v", tt.name, k)
		}
	}
}

// Stolon decodes with encoding/json, which matches keys regardless of
// case: a field spelt otherwise must not override the one written.
func TestSetForceFailCaseVariants(t *testing.T) {
	t.Parallel()
	doc := `{"formatVersion":1,"keepers":{"k":{"uid":"k","status":{"forcefail":false,"FORCEFAIL":false,"healthy":true}}}}`
	out, err := setForceFail([]byte(doc), "k")
	if err != nil {
		t.Fatal(err)
	}
	cd, err := ParseClusterData(out)
	if err != nil {
		t.Fatal(err)
	}
	if !cd.Keepers["k"].Status.ForceFail || !cd.Keepers["k"].Status.Healthy {
		t.Errorf("forceFail %v healthy %v after setForceFail:\n%s", cd.Keepers["k"].Status.ForceFail, cd.Keepers["k"].Status.Healthy, out)
	}
	off, err := setKeeperStatus([]byte(`{"formatVersion":1,"keepers":{"k":{"status":{"ForceFail":true}}}}`), "k", "forceFail", false)
	if err != nil {
		t.Fatal(err)
	}
	if cd, err := ParseClusterData(off); err != nil || cd.Keepers["k"].Status.ForceFail {
		t.Errorf("clearing left ForceFail set: %s (%v)", off, err)
	}
}

// FuzzParseClusterData: whatever Consul holds, reading it does not panic,
// and when it parses, setting forceFail on a keeper either fails or
// yields a document that parses with forceFail set on that keeper.
//
// The inputs that crashed it or broke the property are in
// testdata/fuzz/FuzzParseClusterData.
func FuzzParseClusterData(f *testing.F) {
	for _, name := range fakeconsul.StolonStates() {
		f.Add(capClusterData(f, name))
	}
	for _, doc := range []string{
		`{"formatVersion":1}`,
		`{"formatVersion":1,"keepers":{"k":{"status":{"forceFail":true}}},"dbs":{"d":{"spec":{"keeperUID":"k","role":"master"}}},"cluster":{"status":{"master":"d"}}}`,
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cd, err := ParseClusterData(data)
		if err != nil {
			return
		}
		// What the status, events and preflight read.
		st := &State{Name: "fuzz", Data: cd, KeepersInfo: map[string]KeeperInfo{}, Proxies: map[string]ProxyInfo{"p": {UID: "p"}}, MaxLag: cd.Cluster.Spec.MaxLag()}
		_ = st.Candidates()
		_ = st.ProxyFollows("p")
		_, _ = (&Cluster{Name: "fuzz"}).planFrom(st)
		for _, uid := range cd.KeeperUIDs() {
			_ = cd.Keepers[uid].Status.Healthy
			if db := cd.DBOf(uid); db != nil {
				_, _ = st.Lag(db)
				_ = db.Address()
			}
		}
		_ = cd.MasterKeeper()

		for _, uid := range cd.KeeperUIDs() {
			out, err := setForceFail(data, uid)
			if err != nil {
				continue
			}
			again, err := ParseClusterData(out)
			if err != nil {
				t.Fatalf("setForceFail(%q) wrote what does not parse: %v\n%s", uid, err, out)
			}
			if k := again.Keepers[uid]; k == nil || !k.Status.ForceFail {
				t.Fatalf("setForceFail(%q) did not set it:\n%s", uid, out)
			}
		}
	})
}
