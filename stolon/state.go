package stolon

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
)

// State is a Stolon cluster as its keys show it at one KV index.
type State struct {
	Name        string
	Index       uint64
	Data        *ClusterData
	Entry       Pair                  // clusterdata's entry: value, flags, modify index
	KeepersInfo map[string]KeeperInfo // keepers alive (their info key exists)
	Sentinels   []string              // sentinels alive
	Leader      string                // the sentinel-leader value: a sentinel UID
	LeaderHeld  bool                  // the leader key is held by a session (its sentinel is alive)
	Proxies     map[string]ProxyInfo  // proxies alive
	MaxLag      uint64                // the lag alert threshold (the spec's maxStandbyLag unless configured)
}

// KeeperInfo is what a keeper publishes about itself.
type KeeperInfo struct {
	UID           string `json:"uid"`
	PostgresState *struct {
		Healthy    bool   `json:"healthy"`
		TimelineID uint64 `json:"timelineID"`
		XLogPos    uint64 `json:"xLogPos"`
	} `json:"postgresState"`
}

// ProxyInfo is what a proxy publishes about itself.
type ProxyInfo struct {
	UID        string `json:"UID"`
	Generation int64  `json:"Generation"`
}

// keys under a cluster's prefix.
const (
	keyClusterData    = "clusterdata"
	keySentinelLeader = "sentinel-leader"
	dirKeepers        = "keepers/info/"
	dirSentinels      = "sentinels/info/"
	dirProxies        = "proxies/info/"
)

// clusterPrefix is where a cluster's keys live: <store prefix>/<name>/,
// without the leading slash libkv strips.
func clusterPrefix(storePrefix, name string) string {
	return strings.TrimPrefix(path.Join(storePrefix, name), "/") + "/"
}

// parseState reads a prefix listing.
func parseState(name, prefix string, pairs []Pair, index uint64) (*State, error) {
	s := &State{Name: name, Index: index, KeepersInfo: map[string]KeeperInfo{}, Proxies: map[string]ProxyInfo{}}
	var found bool
	for _, p := range pairs {
		rel := strings.TrimPrefix(p.Key, prefix)
		switch {
		case rel == keyClusterData:
			cd, err := ParseClusterData(p.Value)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.Key, err)
			}
			s.Data, s.Entry, found = cd, p, true
		case rel == keySentinelLeader:
			s.Leader, s.LeaderHeld = strings.TrimSpace(string(p.Value)), p.Session != ""
		case strings.HasPrefix(rel, dirKeepers):
			var ki KeeperInfo
			if json.Unmarshal(p.Value, &ki) == nil {
				s.KeepersInfo[strings.TrimPrefix(rel, dirKeepers)] = ki
			}
		case strings.HasPrefix(rel, dirSentinels):
			s.Sentinels = append(s.Sentinels, strings.TrimPrefix(rel, dirSentinels))
		case strings.HasPrefix(rel, dirProxies):
			var pi ProxyInfo
			if json.Unmarshal(p.Value, &pi) == nil {
				s.Proxies[strings.TrimPrefix(rel, dirProxies)] = pi
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("no Stolon cluster at %s%s (check the cluster name and store prefix)", prefix, keyClusterData)
	}
	sort.Strings(s.Sentinels)
	return s, nil
}

// LeaderAlive: a sentinel leads and is alive. The leader key outlives its
// sentinel (without a session): only with both is someone acting.
func (s *State) LeaderAlive() bool {
	return s.Leader != "" && s.LeaderHeld && slices.Contains(s.Sentinels, s.Leader)
}

// Lag is how far a DB's received WAL is behind the master's, as Stolon
// sees it (received, not replayed). It is not known while the DB or the
// master has not reported a WAL position (a standby being resynced): not
// the master's whole WAL.
func (s *State) Lag(db *DB) (lag uint64, known bool) {
	m := s.Data.MasterDB()
	if m == nil || m.Status.XLogPos == 0 || db.Status.XLogPos == 0 {
		return 0, false
	}
	if db.Status.XLogPos >= m.Status.XLogPos {
		return 0, true
	}
	return m.Status.XLogPos - db.Status.XLogPos, true
}

// ProxyFollows: a proxy applies the current proxy spec, and that spec
// points at the master.
func (s *State) ProxyFollows(uid string) bool {
	pi, ok := s.Proxies[uid]
	cd := s.Data
	return ok && pi.Generation >= cd.Proxy.Generation && cd.Proxy.Spec.MasterDBUID != "" &&
		cd.Proxy.Spec.MasterDBUID == cd.Cluster.Status.Master
}

// Candidate is a standby Stolon would elect, or why not.
type Candidate struct {
	DB     *DB
	Lag    uint64
	Reason string // why it cannot be elected; "" when it can
}

// Candidates applies Stolon's election rule (the sentinel's
// findBestNewMasters) to every DB but the master: a standby whose keeper
// and PostgreSQL are healthy and converged, on the master's timeline,
// whose keeper may be master, within maxStandbyLag (unless replication
// is synchronous, where it must be one of the master's synchronous
// standbys). Eligible ones come first, in the order Stolon sorts them
// (ascending received position), the others after with their reason.
func (s *State) Candidates() []Candidate {
	cd := s.Data
	master := cd.MasterDB()
	if master == nil {
		return nil // nobody to replace (and no synchronous standbys to read)
	}
	var ok, no []Candidate
	for _, uid := range sortedKeys(cd.DBs) {
		db := cd.DBs[uid]
		if uid == master.UID {
			continue
		}
		lag, _ := s.Lag(db)
		c := Candidate{DB: db, Lag: lag, Reason: s.ineligible(db, master)}
		if c.Reason == "" {
			ok = append(ok, c)
		} else {
			no = append(no, c)
		}
	}
	sort.SliceStable(ok, func(i, j int) bool { return ok[i].DB.Status.XLogPos < ok[j].DB.Status.XLogPos })
	if cd.Cluster.Spec.SynchronousReplication {
		// Only a standby both asked and reported synchronous may take over.
		sync := common(master.Spec.SynchronousStandbys, master.Status.SynchronousStandbys)
		var kept []Candidate
		for _, c := range ok {
			if slices.Contains(sync, c.DB.UID) {
				kept = append(kept, c)
			} else {
				c.Reason = "not a synchronous standby of the master"
				no = append(no, c)
			}
		}
		ok = kept
	}
	return append(ok, no...)
}

func (s *State) ineligible(db, master *DB) string {
	cd := s.Data
	k := cd.Keepers[db.Spec.KeeperUID]
	switch {
	case db.Spec.Role != "standby":
		return "not a standby (role " + db.Spec.Role + ")"
	case k == nil:
		return "its keeper " + db.Spec.KeeperUID + " is unknown"
	case !k.Status.Healthy:
		return "keeper " + k.UID + " unhealthy"
	case k.Status.CanBeMaster != nil && !*k.Status.CanBeMaster:
		return "keeper " + k.UID + " has canBeMaster=false"
	case !db.Converged():
		return "its keeper has not applied its latest spec (converging)"
	case !db.Status.Healthy:
		return "PostgreSQL unhealthy"
	case db.Status.TimelineID != master.Status.TimelineID:
		return fmt.Sprintf("on timeline %d, the master on %d", db.Status.TimelineID, master.Status.TimelineID)
	}
	if cd.Cluster.Spec.SynchronousReplication {
		return ""
	}
	// Stolon subtracts whatever was reported: a missing position is a lag
	// of the master's whole WAL, beyond any maxStandbyLag.
	switch lag, known := s.Lag(db); {
	case !known:
		return "has not reported its WAL position"
	case lag > cd.Cluster.Spec.MaxLag():
		return fmt.Sprintf("%d bytes behind, beyond maxStandbyLag (%d)", lag, cd.Cluster.Spec.MaxLag())
	}
	return ""
}

func common(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
