// Package stolon reads a Stolon cluster's state from Consul KV (the
// clusterdata document and the keepers', sentinels' and proxies' info
// keys), applies Stolon's own rule for who may become master, and runs a
// failover that loses no committed write: fence the master, wait for the
// candidate to replay everything, set forceFail, watch the sentinel act,
// check through the proxy.
package stolon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// formatVersion is the only clusterdata format Stolon has written.
const formatVersion = 1

// defaultMaxStandbyLag is Stolon's default maxStandbyLag (1024 * 1204
// bytes in its source).
const defaultMaxStandbyLag = 1024 * 1204

// ClusterData is what Vigie reads of Stolon's clusterdata document. Only
// the fields it uses are typed; writes go through the raw document so that
// every other field survives as it was.
type ClusterData struct {
	FormatVersion int                `json:"formatVersion"`
	ChangeTime    time.Time          `json:"changeTime"`
	Cluster       ClusterObject      `json:"cluster"`
	Keepers       map[string]*Keeper `json:"keepers"`
	DBs           map[string]*DB     `json:"dbs"`
	Proxy         Proxy              `json:"proxy"`
}

// ClusterObject is clusterdata's cluster object: its spec and status.
type ClusterObject struct {
	UID    string      `json:"uid"`
	Spec   ClusterSpec `json:"spec"`
	Status struct {
		Phase  string `json:"phase"`
		Master string `json:"master"` // db UID
	} `json:"status"`
}

// ClusterSpec is the part of the spec the election depends on.
type ClusterSpec struct {
	SynchronousReplication bool    `json:"synchronousReplication"`
	MinSynchronousStandbys *uint16 `json:"minSynchronousStandbys"`
	MaxStandbyLag          *uint32 `json:"maxStandbyLag"`
}

// MaxLag is the lag beyond which Stolon will not elect a standby.
func (s ClusterSpec) MaxLag() uint64 {
	if s.MaxStandbyLag == nil {
		return defaultMaxStandbyLag
	}
	return uint64(*s.MaxStandbyLag)
}

// MinSync is how many synchronous standbys the spec wants (Stolon's
// default is 1 when synchronous replication is on).
func (s ClusterSpec) MinSync() int {
	switch {
	case !s.SynchronousReplication:
		return 0
	case s.MinSynchronousStandbys == nil:
		return 1
	}
	return int(*s.MinSynchronousStandbys)
}

// Keeper is a keeper's status, as the sentinel judges it.
type Keeper struct {
	UID    string `json:"uid"`
	Status struct {
		Healthy         bool      `json:"healthy"` // omitted when false
		LastHealthyTime time.Time `json:"lastHealthyTime"`
		ForceFail       bool      `json:"forceFail"`
		CanBeMaster     *bool     `json:"canBeMaster"`
	} `json:"status"`
}

// DB is a keeper's PostgreSQL instance.
type DB struct {
	UID        string `json:"uid"`
	Generation int64  `json:"generation"`
	Spec       struct {
		KeeperUID           string   `json:"keeperUID"`
		Role                string   `json:"role"` // master, standby
		Followers           []string `json:"followers"`
		SynchronousStandbys []string `json:"synchronousStandbys"`
		FollowConfig        *struct {
			Type  string `json:"type"`
			DBUID string `json:"dbuid"`
		} `json:"followConfig"`
	} `json:"spec"`
	Status struct {
		Healthy             bool     `json:"healthy"` // omitted when false
		CurrentGeneration   int64    `json:"currentGeneration"`
		ListenAddress       string   `json:"listenAddress"`
		Port                string   `json:"port"`
		TimelineID          uint64   `json:"timelineID"`
		XLogPos             uint64   `json:"xLogPos"` // WAL received, not replayed
		SynchronousStandbys []string `json:"synchronousStandbys"`
	} `json:"status"`
}

// Address is where the DB's PostgreSQL listens, host:port.
func (d *DB) Address() string {
	if d.Status.ListenAddress == "" {
		return "" // not reported yet
	}
	return d.Status.ListenAddress + ":" + d.Status.Port
}

// Converged: the keeper applied the DB's latest spec.
func (d *DB) Converged() bool { return d.Generation == d.Status.CurrentGeneration }

// Proxy is what the proxies follow.
type Proxy struct {
	Generation int64 `json:"generation"`
	Spec       struct {
		MasterDBUID    string   `json:"masterDbUid"`
		EnabledProxies []string `json:"enabledProxies"`
	} `json:"spec"`
}

// FormatError is a clusterdata document Vigie does not read.
type FormatError struct{ Version int }

func (e *FormatError) Error() string {
	return fmt.Sprintf("clusterdata has formatVersion %d; Vigie reads Stolon's format 1 only", e.Version)
}

// ParseClusterData reads a clusterdata document.
func ParseClusterData(data []byte) (*ClusterData, error) {
	var cd ClusterData
	if err := json.Unmarshal(data, &cd); err != nil {
		return nil, fmt.Errorf("clusterdata is not valid JSON: %w", err)
	}
	if cd.FormatVersion != formatVersion {
		return nil, &FormatError{Version: cd.FormatVersion}
	}
	// A null entry would be a nil pointer to every reader.
	for uid, k := range cd.Keepers {
		if k == nil {
			return nil, fmt.Errorf("clusterdata: keeper %q is null", uid)
		}
	}
	for uid, d := range cd.DBs {
		if d == nil {
			return nil, fmt.Errorf("clusterdata: db %q is null", uid)
		}
	}
	return &cd, nil
}

// MasterDB is the current master's DB, nil if unknown.
func (cd *ClusterData) MasterDB() *DB { return cd.DBs[cd.Cluster.Status.Master] }

// MasterKeeper is the keeper of the current master, "" if unknown.
func (cd *ClusterData) MasterKeeper() string {
	if m := cd.MasterDB(); m != nil {
		return m.Spec.KeeperUID
	}
	return ""
}

// DBOf is the DB of a keeper, nil if it has none.
func (cd *ClusterData) DBOf(keeper string) *DB {
	for _, d := range cd.DBs {
		if d.Spec.KeeperUID == keeper {
			return d
		}
	}
	return nil
}

// KeeperUIDs lists the keepers, sorted.
func (cd *ClusterData) KeeperUIDs() []string {
	out := make([]string, 0, len(cd.Keepers))
	for uid := range cd.Keepers {
		out = append(out, uid)
	}
	sort.Strings(out)
	return out
}

// setForceFail returns the document with keepers[keeper].status.forceFail
// set.
func setForceFail(data []byte, keeper string) ([]byte, error) {
	return setKeeperStatus(data, keeper, "forceFail", true)
}

// setKeeperStatus returns the document with keepers[keeper].status[field]
// set, every other field (known or not) kept as it was, numbers as
// written (xLogPos is a uint64 a float would round).
func setKeeperStatus(data []byte, keeper, field string, value any) ([]byte, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("clusterdata is not valid JSON: %w", err)
	}
	keepers, _ := doc["keepers"].(map[string]any)
	k, _ := keepers[keeper].(map[string]any)
	if k == nil {
		return nil, fmt.Errorf("clusterdata has no keeper %q", keeper)
	}
	status, _ := k["status"].(map[string]any)
	if status == nil {
		status = map[string]any{}
		k["status"] = status
	}
	// encoding/json, Stolon's decoder, matches keys regardless of case:
	// another spelling written after this one would override it.
	for name := range status {
		if strings.EqualFold(name, field) {
			delete(status, name)
		}
	}
	if value == false {
		delete(status, field) // Stolon omits a false field (omitempty)
	} else {
		status[field] = value
	}
	return json.Marshal(doc) // as Stolon marshals it (keys sorted, which Stolon's reader ignores)
}
