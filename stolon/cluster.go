package stolon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigie/vigie/internal/pgserver"
)

// DefaultStorePrefix is stolon's --store-prefix default.
const DefaultStorePrefix = "stolon/cluster"

// Cluster is one Stolon cluster: where its keys are, how to reach its
// PostgreSQL servers, and the limits of its alerts and failovers.
type Cluster struct {
	Name        string
	StorePrefix string // stolon's --store-prefix; "" is DefaultStorePrefix
	KV          *KV
	// Postgres reaches a stolon-proxy; its user (Stolon's superuser),
	// password and TLS settings also reach each keeper's PostgreSQL at the
	// address clusterdata gives.
	Postgres pgserver.Server
	Database string // the database checks connect to

	MaxLag          uint64        // lag alert threshold; 0: the spec's maxStandbyLag
	Grace           time.Duration // how long lag or a stray proxy lasts before it alerts
	CatchUpTimeout  time.Duration // a failover waits this long for the candidates to replay
	FailoverTimeout time.Duration // from forceFail until writes work through the proxy
	RejoinTimeout   time.Duration // until the old master is back as a standby
}

// Prefix is where the cluster's keys live, with a trailing slash.
func (c *Cluster) Prefix() string {
	p := c.StorePrefix
	if p == "" {
		p = DefaultStorePrefix
	}
	return clusterPrefix(p, c.Name)
}

// ClusterDataKey is the key of the clusterdata document.
func (c *Cluster) ClusterDataKey() string { return c.Prefix() + keyClusterData }

// Read reads the cluster's keys at once; consistent asks Consul's leader
// to check it still leads (what a decision to write must read).
func (c *Cluster) Read(ctx context.Context, consistent bool) (*State, error) {
	return c.read(ctx, 0, 0, consistent)
}

// Wait blocks until the cluster's keys change past index, or wait passes
// (Consul's blocking query), and reads them.
func (c *Cluster) Wait(ctx context.Context, index uint64, wait time.Duration) (*State, error) {
	return c.read(ctx, index, wait, false)
}

func (c *Cluster) read(ctx context.Context, index uint64, wait time.Duration, consistent bool) (*State, error) {
	prefix := c.Prefix()
	pairs, idx, err := c.KV.list(ctx, prefix, index, wait, consistent)
	if err != nil {
		return nil, err
	}
	st, err := parseState(c.Name, prefix, pairs, idx)
	if err != nil {
		return nil, err
	}
	st.MaxLag = c.MaxLag
	if st.MaxLag == 0 {
		st.MaxLag = st.Data.Cluster.Spec.MaxLag()
	}
	return st, nil
}

// keeperServer is how to reach a DB's PostgreSQL directly.
func (c *Cluster) keeperServer(db *DB) (pgserver.Server, error) {
	if db.Status.ListenAddress == "" || db.Status.Port == "" {
		return c.Postgres, fmt.Errorf("clusterdata gives no address for db %s (keeper %s)", db.UID, db.Spec.KeeperUID)
	}
	return addressed(c.Postgres, db.Address())
}

// errChanged: the cluster moved between a preview and its confirmation.
var errChanged = errors.New("changed since the preview; run it again")
