package stolon

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/vigie/vigie/internal/fakeconsul"
)

// The captures' cluster: name main under the default store prefix.
const (
	capPrefix   = "stolon/cluster/main/"
	capLockFlag = 3304740253564472344 // libkv's api.LockFlagValue, on every captured key
)

// capPairs decodes a captured GET ?recurse listing of the cluster's keys.
func capPairs(t testing.TB, name string) []Pair {
	t.Helper()
	var ps []Pair
	if err := json.Unmarshal(fakeconsul.StolonState(name), &ps); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return ps
}

// capClusterData is the clusterdata value of a capture, as Consul holds it.
func capClusterData(t testing.TB, name string) []byte {
	t.Helper()
	for _, p := range capPairs(t, name) {
		if p.Key == capPrefix+keyClusterData {
			return p.Value
		}
	}
	t.Fatalf("%s: no clusterdata key", name)
	return nil
}

// capState reads a capture as Cluster.Read would.
func capState(t testing.TB, name string) *State {
	t.Helper()
	return capStateOf(t, capPairs(t, name))
}

func capStateOf(t testing.TB, pairs []Pair) *State {
	t.Helper()
	st, err := parseState("main", capPrefix, pairs, 1)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// capDecode decodes a JSON document keeping numbers as written.
func capDecode(t testing.TB, data []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("decode: %v\n%s", err, data)
	}
	return doc
}

// capObj walks objects by key, failing the test where one is missing.
func capObj(t testing.TB, doc map[string]any, path ...string) map[string]any {
	t.Helper()
	cur := doc
	for i, k := range path {
		next, ok := cur[k].(map[string]any)
		if !ok {
			t.Fatalf("no object at %s", strings.Join(path[:i+1], "."))
		}
		cur = next
	}
	return cur
}

// capEdit returns pairs with the clusterdata document edited.
func capEdit(t testing.TB, pairs []Pair, edit func(doc map[string]any)) []Pair {
	t.Helper()
	out := slices.Clone(pairs)
	for i, p := range out {
		if p.Key != capPrefix+keyClusterData {
			continue
		}
		doc := capDecode(t, p.Value)
		edit(doc)
		v, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		out[i].Value = v
	}
	return out
}

// capEditState is a capture with its clusterdata edited, read.
func capEditState(t testing.TB, name string, edit func(doc map[string]any)) *State {
	t.Helper()
	return capStateOf(t, capEdit(t, capPairs(t, name), edit))
}

func TestParseStateCaptures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state       string
		keepersInfo []string
		sentinels   []string
		leader      string
		leaderHeld  bool
		proxies     []string
		modifyIndex uint64
	}{
		{"normal", []string{"keeper0", "keeper1"}, []string{"f6db1c81"}, "f6db1c81", true, []string{"5a6b1224"}, 101},
		{"standby-down", []string{"keeper0"}, []string{"f6db1c81"}, "f6db1c81", true, []string{"5a6b1224"}, 195},
		{"no-sentinel", []string{"keeper0", "keeper1"}, nil, "f6db1c81", false, []string{"5a6b1224"}, 431},
		{"proxy-down", []string{"keeper0", "keeper1"}, []string{"81375632"}, "81375632", true, nil, 514},
		{"failover-00", []string{"keeper0", "keeper1"}, []string{"81375632"}, "81375632", true, []string{"52329865"}, 591},
		{"failover-02", []string{"keeper0", "keeper1"}, []string{"81375632"}, "81375632", true, []string{"52329865"}, 592},
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			t.Parallel()
			pairs := capPairs(t, tt.state)
			st, err := parseState("main", capPrefix, pairs, 4242)
			if err != nil {
				t.Fatal(err)
			}
			if st.Name != "main" || st.Index != 4242 {
				t.Errorf("name %q index %d, want main 4242", st.Name, st.Index)
			}
			if got := sortedKeys(st.KeepersInfo); !slices.Equal(got, tt.keepersInfo) {
				t.Errorf("keepers alive %v, want %v", got, tt.keepersInfo)
			}
			for uid, ki := range st.KeepersInfo {
				if ki.UID != uid || ki.PostgresState == nil || !ki.PostgresState.Healthy || ki.PostgresState.XLogPos == 0 {
					t.Errorf("keeper info %s: %+v", uid, ki)
				}
			}
			if !slices.Equal(st.Sentinels, tt.sentinels) {
				t.Errorf("sentinels %v, want %v", st.Sentinels, tt.sentinels)
			}
			if st.Leader != tt.leader || st.LeaderHeld != tt.leaderHeld {
				t.Errorf("leader %q held %v, want %q %v", st.Leader, st.LeaderHeld, tt.leader, tt.leaderHeld)
			}
			if got := sortedKeys(st.Proxies); !slices.Equal(got, tt.proxies) {
				t.Errorf("proxies %v, want %v", got, tt.proxies)
			}
			for uid, pi := range st.Proxies {
				if pi.UID != uid || pi.Generation == 0 {
					t.Errorf("proxy info %s: %+v", uid, pi)
				}
			}
			if st.Entry.Key != capPrefix+"clusterdata" || st.Entry.Flags != capLockFlag || st.Entry.ModifyIndex != tt.modifyIndex {
				t.Errorf("entry %s flags %d modify index %d, want flags %d index %d", st.Entry.Key, st.Entry.Flags, st.Entry.ModifyIndex, capLockFlag, tt.modifyIndex)
			}
			if !bytes.Equal(st.Entry.Value, capClusterData(t, tt.state)) {
				t.Error("the entry does not hold the clusterdata value as read")
			}
		})
	}
}

func TestParseStateErrors(t *testing.T) {
	t.Parallel()
	normal := capPairs(t, "normal")
	corrupt := slices.Clone(normal)
	formatTwo := capEdit(t, normal, func(doc map[string]any) { doc["formatVersion"] = 2 })
	for i, p := range corrupt {
		if p.Key == capPrefix+keyClusterData {
			corrupt[i].Value = p.Value[:len(p.Value)/2]
		}
	}
	var noClusterData []Pair
	for _, p := range normal {
		if p.Key != capPrefix+keyClusterData {
			noClusterData = append(noClusterData, p)
		}
	}
	tests := []struct {
		name   string
		prefix string
		pairs  []Pair
		want   []string
		format bool // a *FormatError in the chain
	}{
		{"empty listing", capPrefix, nil, []string{"no Stolon cluster at stolon/cluster/main/clusterdata", "cluster name and store prefix"}, false},
		{"other cluster's keys", "stolon/cluster/other/", normal, []string{"no Stolon cluster at stolon/cluster/other/clusterdata"}, false},
		{"info keys without clusterdata", capPrefix, noClusterData, []string{"no Stolon cluster at stolon/cluster/main/clusterdata"}, false},
		{"corrupt clusterdata", capPrefix, corrupt, []string{"stolon/cluster/main/clusterdata: clusterdata is not valid JSON"}, false},
		{"format 2", capPrefix, formatTwo, []string{"stolon/cluster/main/clusterdata: clusterdata has formatVersion 2"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, err := parseState("main", tt.prefix, tt.pairs, 1)
			if err == nil {
				t.Fatalf("no error, state %+v", st)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			var fe *FormatError
			if errors.As(err, &fe) != tt.format {
				t.Errorf("errors.As(*FormatError) = %v, want %v (%v)", !tt.format, tt.format, err)
			}
		})
	}
}

// Info keys whose values are not what Stolon writes are left out, not fatal.
func TestParseStateIgnoresBadInfo(t *testing.T) {
	t.Parallel()
	pairs := capPairs(t, "normal")
	for i, p := range pairs {
		if p.Key == capPrefix+"keepers/info/keeper1" || strings.HasPrefix(p.Key, capPrefix+"proxies/info/") {
			pairs[i].Value = []byte("not json")
		}
	}
	pairs = append(pairs, Pair{Key: capPrefix + "sentinel-leader-not", Value: []byte("x")}, Pair{Key: capPrefix + "unknown/key", Value: []byte("{}")})
	st := capStateOf(t, pairs)
	if _, ok := st.KeepersInfo["keeper1"]; ok || len(st.KeepersInfo) != 1 {
		t.Errorf("keepers alive %v, want only keeper0", sortedKeys(st.KeepersInfo))
	}
	if len(st.Proxies) != 0 {
		t.Errorf("proxies %v, want none", st.Proxies)
	}
	if st.Leader != "f6db1c81" {
		t.Errorf("leader %q: a key sharing the leader key's prefix replaced it", st.Leader)
	}
}

func TestClusterPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct{ store, name, want string }{
		{"stolon/cluster", "main", "stolon/cluster/main/"},
		{"/stolon/cluster", "main", "stolon/cluster/main/"}, // libkv strips the leading slash
		{"stolon/cluster/", "main", "stolon/cluster/main/"},
		{"/a//b/", "c", "a/b/c/"},
		{"", "main", "main/"},
	}
	for _, tt := range tests {
		if got := clusterPrefix(tt.store, tt.name); got != tt.want {
			t.Errorf("clusterPrefix(%q, %q) = %q, want %q", tt.store, tt.name, got, tt.want)
		}
	}
	c := &Cluster{Name: "main"}
	if c.Prefix() != capPrefix || c.ClusterDataKey() != capPrefix+"clusterdata" {
		t.Errorf("default store prefix: %q, %q", c.Prefix(), c.ClusterDataKey())
	}
	c.StorePrefix = "/ha/pg"
	if c.Prefix() != "ha/pg/main/" || c.ClusterDataKey() != "ha/pg/main/clusterdata" {
		t.Errorf("store prefix /ha/pg: %q, %q", c.Prefix(), c.ClusterDataKey())
	}
}

// candidateView is a Candidate as the tests compare it.
type candidateView struct {
	Keeper, DB string
	Lag        uint64
	Reason     string // a substring of the reason; "" for an eligible one
}

func viewCandidates(cs []Candidate) []candidateView {
	out := make([]candidateView, len(cs))
	for i, c := range cs {
		out[i] = candidateView{c.DB.Spec.KeeperUID, c.DB.UID, c.Lag, c.Reason}
	}
	return out
}

func checkCandidates(t *testing.T, got []Candidate, want []candidateView) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("candidates %+v, want %+v", viewCandidates(got), want)
	}
	for i, w := range want {
		g := got[i]
		if g.DB.Spec.KeeperUID != w.Keeper || g.DB.UID != w.DB || g.Lag != w.Lag {
			t.Errorf("candidate %d: %+v, want %+v", i, viewCandidates(got)[i], w)
		}
		switch {
		case w.Reason == "" && g.Reason != "":
			t.Errorf("candidate %d (%s) refused: %s", i, g.DB.Spec.KeeperUID, g.Reason)
		case w.Reason != "" && !strings.Contains(g.Reason, w.Reason):
			t.Errorf("candidate %d (%s): reason %q, want one saying %q", i, g.DB.Spec.KeeperUID, g.Reason, w.Reason)
		}
	}
}

// Stolon's election rule on the captured states (see the capture README
// for what each shows).
func TestCandidatesCaptures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state string
		want  []candidateView
	}{
		{"normal", []candidateView{{"keeper1", "0e651c76", 0, ""}}},
		// Replay paused: Stolon sees the WAL received, equal on both.
		{"lagging", []candidateView{{"keeper1", "0e651c76", 0, ""}}},
		{"lagging-walrcv-stopped", []candidateView{{"keeper1", "0e651c76", 57881744, "57881744 bytes behind, beyond maxStandbyLag (1232896)"}}},
		{"standby-down", []candidateView{{"keeper1", "0e651c76", 23704, "keeper keeper1 unhealthy"}}},
		{"no-eligible-standby", []candidateView{{"keeper0", "476ec92d", 57105960, "57105960 bytes behind, beyond maxStandbyLag"}}},
		{"no-eligible-standby-replaypaused", []candidateView{{"keeper1", "c5026e72", 0, "converging"}}},
		{"sync", []candidateView{{"keeper1", "0e651c76", 0, ""}}},
		// The election does not depend on sentinels or proxies.
		{"no-sentinel", []candidateView{{"keeper1", "0e651c76", 0, ""}}},
		{"proxy-down", []candidateView{{"keeper1", "0e651c76", 0, ""}}},
		// Resyncing after the failover: no xLogPos yet, a new generation.
		{"failover", []candidateView{{"keeper0", "476ec92d", 0, "its keeper has not applied its latest spec (converging)"}}},
		{"failover-00", []candidateView{{"keeper1", "0e651c76", 0, ""}}},
		{"failover-02", []candidateView{{"keeper1", "0e651c76", 0, ""}}}, // forceFail on the master changes nothing here
		// The sentinel made 0e651c76 master; the old master db keeps its role one cycle.
		{"failover-06", []candidateView{{"keeper0", "d51919e0", 1056, "not a standby (role master)"}}},
		{"failover-16", []candidateView{{"keeper0", "476ec92d", 0, "converging"}}},
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			t.Parallel()
			checkCandidates(t, capState(t, tt.state).Candidates(), tt.want)
		})
	}
}

// dbStatus is dbs.<uid>.status of a decoded document.
func dbStatus(t testing.TB, doc map[string]any, uid string) map[string]any {
	return capObj(t, doc, "dbs", uid, "status")
}

// Edits of the normal capture (master d51919e0 on keeper0 at xLogPos
// 50709824, standby 0e651c76 on keeper1 at the same position).
func TestCandidatesRule(t *testing.T) {
	t.Parallel()
	const standby, master = "0e651c76", "d51919e0"
	const pos = 50709824
	tests := []struct {
		name string
		edit func(t *testing.T, doc map[string]any)
		want candidateView
	}{
		{"canBeMaster false", func(t *testing.T, doc map[string]any) {
			capObj(t, doc, "keepers", "keeper1", "status")["canBeMaster"] = false
		}, candidateView{"keeper1", standby, 0, "keeper keeper1 has canBeMaster=false"}},
		{"canBeMaster absent (Stolon's default: may)", func(t *testing.T, doc map[string]any) {
			delete(capObj(t, doc, "keepers", "keeper1", "status"), "canBeMaster")
		}, candidateView{"keeper1", standby, 0, ""}},
		{"keeper unhealthy (healthy omitted)", func(t *testing.T, doc map[string]any) {
			delete(capObj(t, doc, "keepers", "keeper1", "status"), "healthy")
		}, candidateView{"keeper1", standby, 0, "keeper keeper1 unhealthy"}},
		{"keeper unknown", func(t *testing.T, doc map[string]any) {
			capObj(t, doc, "dbs", standby, "spec")["keeperUID"] = "keeper9"
		}, candidateView{"keeper9", standby, 0, "its keeper keeper9 is unknown"}},
		{"PostgreSQL unhealthy", func(t *testing.T, doc map[string]any) {
			delete(dbStatus(t, doc, standby), "healthy")
		}, candidateView{"keeper1", standby, 0, "PostgreSQL unhealthy"}},
		{"not converged", func(t *testing.T, doc map[string]any) {
			dbStatus(t, doc, standby)["currentGeneration"] = 1
		}, candidateView{"keeper1", standby, 0, "converging"}},
		{"other timeline", func(t *testing.T, doc map[string]any) {
			dbStatus(t, doc, standby)["timelineID"] = 2
		}, candidateView{"keeper1", standby, 0, "on timeline 2, the master on 1"}},
		{"lag exactly maxStandbyLag", func(t *testing.T, doc map[string]any) {
			dbStatus(t, doc, master)["xLogPos"] = pos + defaultMaxStandbyLag
		}, candidateView{"keeper1", standby, defaultMaxStandbyLag, ""}},
		{"lag one byte beyond maxStandbyLag", func(t *testing.T, doc map[string]any) {
			dbStatus(t, doc, master)["xLogPos"] = pos + defaultMaxStandbyLag + 1
		}, candidateView{"keeper1", standby, defaultMaxStandbyLag + 1, "1232897 bytes behind, beyond maxStandbyLag (1232896)"}},
		{"the spec's maxStandbyLag", func(t *testing.T, doc map[string]any) {
			capObj(t, doc, "cluster", "spec")["maxStandbyLag"] = 100
			dbStatus(t, doc, master)["xLogPos"] = pos + 101
		}, candidateView{"keeper1", standby, 101, "101 bytes behind, beyond maxStandbyLag (100)"}},
		{"standby ahead of the master", func(t *testing.T, doc map[string]any) {
			dbStatus(t, doc, standby)["xLogPos"] = pos + 1<<30
		}, candidateView{"keeper1", standby, 0, ""}},
		{"the master's synchronousStandbys ignored without synchronousReplication", func(t *testing.T, doc map[string]any) {
			capObj(t, doc, "dbs", master, "spec")["synchronousStandbys"] = []any{"someone-else"}
			dbStatus(t, doc, master)["synchronousStandbys"] = []any{"someone-else"}
		}, candidateView{"keeper1", standby, 0, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := capEditState(t, "normal", func(doc map[string]any) { tt.edit(t, doc) })
			checkCandidates(t, st.Candidates(), []candidateView{tt.want})
		})
	}
}

// With synchronous replication, only a standby the master both wants
// and reports synchronous may be elected, however far behind it looks.
func TestCandidatesSynchronous(t *testing.T) {
	t.Parallel()
	const standby, master = "0e651c76", "d51919e0"
	tests := []struct {
		name string
		edit func(t *testing.T, doc map[string]any)
		want candidateView
	}{
		{"in sync", func(*testing.T, map[string]any) {}, candidateView{"keeper1", standby, 0, ""}},
		{"lag ignored", func(t *testing.T, doc map[string]any) {
			dbStatus(t, doc, standby)["xLogPos"] = 1
		}, candidateView{"keeper1", standby, 165612671, ""}},
		{"not reported synchronous", func(t *testing.T, doc map[string]any) {
			dbStatus(t, doc, master)["synchronousStandbys"] = nil
		}, candidateView{"keeper1", standby, 0, "not a synchronous standby of the master"}},
		{"not wanted synchronous", func(t *testing.T, doc map[string]any) {
			capObj(t, doc, "dbs", master, "spec")["synchronousStandbys"] = []any{}
		}, candidateView{"keeper1", standby, 0, "not a synchronous standby of the master"}},
		{"in sync but unhealthy: the first reason stays", func(t *testing.T, doc map[string]any) {
			delete(capObj(t, doc, "keepers", "keeper1", "status"), "healthy")
		}, candidateView{"keeper1", standby, 0, "keeper keeper1 unhealthy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := capEditState(t, "sync", func(doc map[string]any) { tt.edit(t, doc) })
			if !st.Data.Cluster.Spec.SynchronousReplication || st.Data.Cluster.Spec.MinSync() != 1 {
				t.Fatalf("the sync capture has synchronousReplication %v, min %d", st.Data.Cluster.Spec.SynchronousReplication, st.Data.Cluster.Spec.MinSync())
			}
			checkCandidates(t, st.Candidates(), []candidateView{tt.want})
		})
	}
}

// addStandby copies the standby 0e651c76 of keeper1 as db uid on a new
// keeper, at xLogPos pos.
func addStandby(t testing.TB, doc map[string]any, uid, keeper string, pos uint64) {
	t.Helper()
	db := capDecode(t, mustJSON(t, capObj(t, doc, "dbs", "0e651c76")))
	db["uid"] = uid
	capObj(t, db, "spec")["keeperUID"] = keeper
	capObj(t, db, "status")["xLogPos"] = pos
	capObj(t, doc, "dbs")[uid] = db
	k := capDecode(t, mustJSON(t, capObj(t, doc, "keepers", "keeper1")))
	k["uid"] = keeper
	capObj(t, doc, "keepers")[keeper] = k
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Eligible standbys come first in Stolon's order (findBestNewMasters sorts
// by ascending xLogPos and takes the first), the others after, by uid.
func TestCandidatesOrder(t *testing.T) {
	t.Parallel()
	const pos = 50709824
	st := capEditState(t, "normal", func(doc map[string]any) {
		dbStatus(t, doc, "0e651c76")["xLogPos"] = pos - 10
		addStandby(t, doc, "aaaa0001", "keeper2", pos-20)
		addStandby(t, doc, "00000003", "keeper3", pos)
		addStandby(t, doc, "00000004", "keeper4", pos)
		delete(capObj(t, doc, "keepers", "keeper4", "status"), "healthy")
		addStandby(t, doc, "00000005", "keeper5", pos-defaultMaxStandbyLag-1)
	})
	checkCandidates(t, st.Candidates(), []candidateView{
		{"keeper2", "aaaa0001", 20, ""},
		{"keeper1", "0e651c76", 10, ""},
		{"keeper3", "00000003", 0, ""},
		{"keeper4", "00000004", 0, "keeper keeper4 unhealthy"},
		{"keeper5", "00000005", defaultMaxStandbyLag + 1, "beyond maxStandbyLag"},
	})
}

// Without a known master there is nobody to replace: no candidate, with
// or without synchronous replication (an initializing cluster, or
// cluster.status.master naming a db not written yet).
func TestCandidatesNoMaster(t *testing.T) {
	t.Parallel()
	for _, state := range []string{"normal", "sync"} {
		for _, master := range []string{"", "0badc0de"} {
			st := capEditState(t, state, func(doc map[string]any) {
				capObj(t, doc, "cluster", "status")["master"] = master
			})
			if st.Data.MasterDB() != nil || st.Data.MasterKeeper() != "" {
				t.Fatalf("%s, master %q: master db %v keeper %q", state, master, st.Data.MasterDB(), st.Data.MasterKeeper())
			}
			if cs := st.Candidates(); len(cs) != 0 {
				t.Errorf("%s, master %q: candidates %+v, want none", state, master, viewCandidates(cs))
			}
		}
	}
}

func TestLag(t *testing.T) {
	t.Parallel()
	st := capState(t, "lagging-walrcv-stopped")
	master, standby := st.Data.DBs["d51919e0"], st.Data.DBs["0e651c76"]
	if got, known := st.Lag(standby); !known || got != 57881744 || got != master.Status.XLogPos-standby.Status.XLogPos {
		t.Errorf("lag of the stopped walreceiver %d (known %v), want 57881744 (master %d - standby %d)", got, known, master.Status.XLogPos, standby.Status.XLogPos)
	}
	if got, known := st.Lag(master); !known || got != 0 {
		t.Errorf("the master's own lag %d (known %v)", got, known)
	}
	standby.Status.XLogPos = master.Status.XLogPos + 5
	if got, known := st.Lag(standby); !known || got != 0 {
		t.Errorf("a standby ahead lags %d (known %v), want 0", got, known)
	}
	// A standby being resynced has reported no position: its lag is not
	// known (not the master's whole WAL), and Stolon would not elect it.
	standby.Status.XLogPos = 0
	if got, known := st.Lag(standby); known || got != 0 {
		t.Errorf("a standby without a position lags %d (known %v), want unknown", got, known)
	}
	if r := st.ineligible(standby, master); r == "" {
		t.Error("a standby without a position is eligible")
	}
	standby.Status.XLogPos = 100
	st.Data.Cluster.Status.Master = ""
	if got, known := st.Lag(standby); known || got != 0 {
		t.Errorf("lag without a master %d (known %v), want unknown", got, known)
	}
}

func TestLeaderAlive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		st   func(t *testing.T) *State
		want bool
	}{
		{"normal", func(t *testing.T) *State { return capState(t, "normal") }, true},
		{"no-sentinel: the key outlives its sentinel, without a session", func(t *testing.T) *State { return capState(t, "no-sentinel") }, false},
		{"a session, but the named sentinel's info is gone", func(t *testing.T) *State {
			st := capState(t, "normal")
			st.Sentinels = []string{"81375632"}
			return st
		}, false},
		{"the sentinel alive but no session on the key", func(t *testing.T) *State {
			st := capState(t, "normal")
			st.LeaderHeld = false
			return st
		}, false},
		{"no leader key", func(t *testing.T) *State {
			var pairs []Pair
			for _, p := range capPairs(t, "normal") {
				if p.Key != capPrefix+keySentinelLeader {
					pairs = append(pairs, p)
				}
			}
			return capStateOf(t, pairs)
		}, false},
		{"a leader value with a trailing newline", func(t *testing.T) *State {
			pairs := capPairs(t, "normal")
			for i, p := range pairs {
				if p.Key == capPrefix+keySentinelLeader {
					pairs[i].Value = append(p.Value, '\n')
				}
			}
			return capStateOf(t, pairs)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.st(t).LeaderAlive(); got != tt.want {
				t.Errorf("LeaderAlive() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProxyFollows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state, proxy string
		want         bool
	}{
		{"normal", "5a6b1224", true},
		{"normal", "52329865", false}, // no such proxy alive
		{"proxy-down", "5a6b1224", false},
		{"proxy-down", "52329865", false},
		{"failover-00", "52329865", true},
		{"failover-06", "52329865", false}, // masterDbUid removed: no master to route to
		{"failover-11", "52329865", false}, // masterDbUid back, the proxy still at generation 11 of 12
		{"failover-16", "52329865", true},
	}
	for _, tt := range tests {
		if got := capState(t, tt.state).ProxyFollows(tt.proxy); got != tt.want {
			t.Errorf("%s: ProxyFollows(%s) = %v, want %v", tt.state, tt.proxy, got, tt.want)
		}
	}
	// A proxy spec pointing elsewhere than the master.
	st := capEditState(t, "normal", func(doc map[string]any) {
		capObj(t, doc, "proxy", "spec")["masterDbUid"] = "0e651c76"
	})
	if st.ProxyFollows("5a6b1224") {
		t.Error("a proxy following a spec that names the standby follows the master")
	}
}
