package main

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/stolon"
	"github.com/vigie/vigie/store"
)

// newStolon builds the service of the Stolon clusters, read through the
// [consul] connection.
func newStolon(cfg *config.Config, clk clock.Clock, st *store.Store, consulTLS *tls.Config) *stolon.Service {
	var clusters []*stolon.Cluster
	for _, c := range cfg.Stolon.Clusters {
		clusters = append(clusters, &stolon.Cluster{
			Name: c.Name, StorePrefix: c.StorePrefix,
			KV: &stolon.KV{Address: cfg.Consul.Address, Token: cfg.StolonToken(c).Reveal(), Datacenter: cfg.Consul.Datacenter,
				Client: clusterClient(consulTLS)},
			Postgres: pgServer(c.Postgres), Database: c.Database,
			MaxLag: uint64(c.MaxLag), Grace: c.Grace.Duration,
			CatchUpTimeout: c.CatchUpTimeout.Duration, FailoverTimeout: c.FailoverTimeout.Duration, RejoinTimeout: c.RejoinTimeout.Duration,
		})
	}
	return stolon.NewService(clusters, st, clk)
}

// failoverTimeout is the command timeout of failover: the longest a
// cluster's failover may take, and some time for the checks around it.
func failoverTimeout(cfg *config.Config) time.Duration {
	var longest time.Duration
	for _, c := range cfg.Stolon.Clusters {
		longest = max(longest, c.CatchUpTimeout.Duration+c.FailoverTimeout.Duration+c.RejoinTimeout.Duration+2*time.Minute)
	}
	return longest
}

// runStolon lifts the fences a crash of Vigie left in the middle of a
// failover, retrying until they are gone.
func (a *app) runStolon(ctx context.Context) {
	a.stolon.Recover(ctx)
}
