package doctor

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/stolon"
)

// consulUsed tells whether the configuration uses Consul at all.
func consulUsed(cfg *config.Config) bool {
	if cfg.Consul.Watch || len(cfg.Stolon.Clusters) > 0 || cfg.HA.Enabled {
		return true
	}
	for _, t := range cfg.Backups.Targets {
		if t.Kind == config.BackupConsul {
			return true
		}
	}
	return false
}

type consulProbe struct {
	cfg   *config.Config
	api   *httpAPI
	token string
}

func consulChecks(p *Plan, cfg *config.Config, tc *tls.Config) {
	const comp = "consul"
	if !consulUsed(cfg) {
		p.Add(Check{Component: comp, Name: "cluster", Run: func(context.Context) Result {
			return Skip("not used: consul.watch is off, no [[stolon.clusters]], no backup target is kind consul and [ha] is off")
		}})
		return
	}
	var q url.Values
	if cfg.Consul.Datacenter != "" {
		q = url.Values{"dc": {cfg.Consul.Datacenter}}
	}
	c := &consulProbe{cfg: cfg, api: newHTTPAPI("Consul", "consul", cfg.Consul.Address, tc, "X-Consul-Token", cfg.Consul.Token.Reveal(), q), token: cfg.Consul.Token.Reveal()}
	leader := NewLazy(c.api.leader)
	p.Add(Check{Component: comp, Name: "reachable", Run: c.api.reachableCheck(leader)})
	p.Add(Check{Component: comp, Name: "tls", Run: c.api.tlsCheck(leader, tlsSettings{cfg.Consul.TLS.CAFile, cfg.Consul.TLS.CertFile})})
	p.Add(Check{Component: comp, Name: "token", Run: c.tokenCheck})
	if cfg.Consul.Watch {
		p.Add(Check{Component: comp, Name: "read health", Run: c.healthCheck})
	}
	haChecks(p, cfg, tc)
	for _, t := range cfg.Backups.Targets {
		if t.Kind != config.BackupConsul {
			continue
		}
		tok := c.token
		if t.Token.IsSet() {
			tok = t.Token.Reveal()
		}
		p.Add(Check{Component: comp, Name: "snapshot for backup " + t.Name, Run: c.api.snapshotCheck("/v1/snapshot", tok,
			`saving a snapshot needs acl = "write" (deploy/acl/consul-snapshot.hcl), in a token of its own in the target's token_file`)})
	}
}

// tokenCheck asks Consul about the token: known, its policies, its expiry.
func (c *consulProbe) tokenCheck(ctx context.Context) Result {
	var tok struct {
		AccessorID     string
		Description    string
		Policies       []struct{ Name string }
		ExpirationTime *time.Time
	}
	status, body, err := c.api.getJSON(ctx, "/v1/acl/token/self", nil, c.token, &tok)
	switch {
	case err != nil:
		return Fail("%v", err)
	case status == http.StatusUnauthorized || strings.Contains(body, "ACL support disabled"):
		return Warn("ACLs are disabled on this cluster: anyone who reaches %s may do anything", c.cfg.Consul.Address)
	case status == http.StatusForbidden && c.token == "":
		return Warn("no token is configured (consul.token_file or CONSUL_HTTP_TOKEN): Vigie acts as the anonymous token (%s)", body)
	case status == http.StatusForbidden:
		return Fail("Consul refused the token (%s): it is unknown, expired or deleted; check consul.token_file or CONSUL_HTTP_TOKEN", body)
	case status != http.StatusOK:
		return Skip("Consul answered %d to GET /v1/acl/token/self: cannot tell (%s)", status, body)
	}
	var names []string
	for _, p := range tok.Policies {
		names = append(names, p.Name)
	}
	detail := fmt.Sprintf("token %q", tok.Description)
	if len(names) > 0 {
		detail += " (policies " + strings.Join(names, ", ") + ")"
	}
	if tok.ExpirationTime != nil && !tok.ExpirationTime.IsZero() {
		if time.Until(*tok.ExpirationTime) < 7*24*time.Hour {
			return Warn("%s expires at %s: create a new one before", detail, tok.ExpirationTime.UTC().Format(time.RFC3339))
		}
		detail += ", expires " + tok.ExpirationTime.UTC().Format("2006-01-02")
	}
	return OK("%s", detail)
}

// healthCheck reads the health state the alerts watch. Consul does not
// refuse a token that may not read some nodes or services: it leaves
// their checks out, and says so in a header.
func (c *consulProbe) healthCheck(ctx context.Context) Result {
	resp, err := c.api.get(ctx, "/v1/health/state/any", url.Values{"stale": {""}}, c.token)
	if err != nil {
		return Fail("%v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return Fail("Consul at %s: reading the health state: %v", c.cfg.Consul.Address, err)
	}
	if resp.StatusCode == http.StatusForbidden {
		return Fail("Consul refused to show the health checks (%s): give the token deploy/acl/consul-watch.hcl", snippet(body))
	}
	if resp.StatusCode != http.StatusOK {
		return Fail("Consul answered %d to GET /v1/health/state/any: %s", resp.StatusCode, snippet(body))
	}
	var checks []json.RawMessage
	if err := json.Unmarshal(body, &checks); err != nil {
		return Fail("Consul answered GET /v1/health/state/any with what is not a list of checks: %v", err)
	}
	if resp.Header.Get("X-Consul-Results-Filtered-By-ACLs") == "true" {
		return Warn("%d checks visible, others hidden by ACLs: the token needs node_prefix \"\" and service_prefix \"\" read (deploy/acl/consul-watch.hcl)", len(checks))
	}
	if len(checks) == 0 {
		return Warn("no health check visible: an empty cluster, or a token that may read nothing (deploy/acl/consul-watch.hcl)")
	}
	return OK("%d health checks visible", len(checks))
}

// stolonChecks are the checks of each [[stolon.clusters]]: its keys in
// Consul and its PostgreSQL through the proxy.
func stolonChecks(p *Plan, cfg *config.Config, clusters []*stolon.Cluster) {
	const comp = "stolon"
	if len(cfg.Stolon.Clusters) == 0 {
		p.Add(Check{Component: comp, Name: "clusters", Run: func(context.Context) Result {
			return Skip("no [[stolon.clusters]]")
		}})
		return
	}
	for _, c := range clusters {
		p.Add(Check{Component: comp, Name: c.Name + " keys", Run: func(ctx context.Context) Result {
			st, err := c.Read(ctx, false)
			if err != nil {
				return Fail("%v", err)
			}
			master := st.Data.MasterKeeper()
			if master == "" {
				master = "none"
			}
			detail := fmt.Sprintf("%s: master keeper %s, %d keepers, %d sentinels, %d proxies alive",
				c.Prefix(), master, len(st.KeepersInfo), len(st.Sentinels), len(st.Proxies))
			if !st.LeaderAlive() {
				return Warn("%s; no live sentinel leads the cluster", detail)
			}
			return OK("%s", detail)
		}})
		if len(allowedCommands(cfg, []string{"failover"})) > 0 {
			p.Add(Check{Component: comp, Name: c.Name + " failover write", Run: func(ctx context.Context) Result {
				return stolonWriteCheck(ctx, c)
			}})
		}
		server := NewLazy(func(ctx context.Context) (pgVersion, error) { return serverVersion(ctx, c.Postgres, c.Database) })
		p.Add(Check{Component: comp, Name: c.Name + " postgres", Run: func(ctx context.Context) Result {
			v, err := server.Get(ctx)
			if err != nil {
				return Fail("through the proxy: %s", pgError(err))
			}
			return OK("PostgreSQL %s (major %d) at %s, database %s", v.full, v.major, c.Postgres, c.Database)
		}})
	}
}

// stolonWriteCheck tells whether the cluster's token may write its
// clusterdata, as a failover does, without writing it.
func stolonWriteCheck(ctx context.Context, c *stolon.Cluster) Result {
	client := c.KV.Client
	if client == nil {
		client = http.DefaultClient
	}
	var q url.Values
	if c.KV.Datacenter != "" {
		q = url.Values{"dc": {c.KV.Datacenter}}
	}
	api := &httpAPI{name: "Consul", table: "consul", addr: strings.TrimRight(c.KV.Address, "/"), client: client,
		header: "X-Consul-Token", token: c.KV.Token, query: q}
	key := c.ClusterDataKey()
	hint := fmt.Sprintf("key_prefix %q { policy = \"write\" } for failover (deploy/acl/consul-stolon.hcl)", c.Prefix())
	if err := api.mayWriteKey(ctx, key, c.KV.Token, hint); err != nil {
		return Fail("%v", err)
	}
	return OK("the token may write %s, as a failover does (checked without writing)", key)
}
