package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Stolon lists the Stolon (PostgreSQL HA) clusters Vigie watches and can
// fail over. Each cluster's state is in Consul KV under
// <store_prefix>/<name>/, read through the [consul] connection.
type Stolon struct {
	Clusters []StolonCluster `toml:"clusters"`
}

// StolonCluster is one Stolon cluster.
type StolonCluster struct {
	Name        string `toml:"name"`         // stolon's --cluster-name, a Consul key segment
	StorePrefix string `toml:"store_prefix"` // stolon's --store-prefix, without a leading "/"
	// TokenFile holds a Consul token for this cluster's keys; without it
	// (nor VIGIE_STOLON_<NAME>_TOKEN) the [consul] token: see StolonToken.
	TokenFile string `toml:"token_file"`
	Token     Secret `toml:"-"`
	Database  string `toml:"database"` // the database probes and checks connect to
	// Postgres is a stolon-proxy (host, port) and Stolon's superuser
	// (--pg-su-username); the same user, password and sslmode reach each
	// keeper's PostgreSQL at the address clusterdata gives.
	Postgres PGServer `toml:"postgres"`
	MaxLag   Size     `toml:"max_lag"` // lag alert threshold; 0: the cluster spec's maxStandbyLag
	Grace    Duration `toml:"grace"`   // how long lag or a proxy not following lasts before it alerts
	// A failover waits CatchUpTimeout for the candidate to replay all the
	// fenced master wrote, FailoverTimeout from forceFail until the new
	// master takes writes through the proxy, RejoinTimeout until the old
	// master is back as a standby.
	CatchUpTimeout  Duration `toml:"catch_up_timeout"`
	FailoverTimeout Duration `toml:"failover_timeout"`
	RejoinTimeout   Duration `toml:"rejoin_timeout"`
}

// DefaultStolonStorePrefix is stolon's own --store-prefix default.
const DefaultStolonStorePrefix = "stolon/cluster"

// stolonName is what a cluster name may hold: it is a Consul key segment.
var stolonName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// KeyPrefix is the Consul KV prefix of the cluster's keys, with its
// trailing "/": "stolon/cluster/main/".
func (s StolonCluster) KeyPrefix() string {
	return s.StorePrefix + "/" + s.Name + "/"
}

// StolonToken is the Consul token for a cluster's keys: its own, else the
// [consul] one.
func (c *Config) StolonToken(s StolonCluster) Secret {
	if s.Token.IsSet() {
		return s.Token
	}
	return c.Consul.Token
}

// stolonDefaults fill what an entry of [[stolon.clusters]] leaves out;
// a key the file sets keeps its value, to be validated.
func (c *Config) stolonDefaults() {
	for i := range c.Stolon.Clusters {
		s := &c.Stolon.Clusters[i]
		key := func(k string) string { return fmt.Sprintf("stolon.clusters[%d].%s", i, k) }
		unset := func(k string, zero bool) bool { return zero && !c.inFile(key(k)) }
		if unset("store_prefix", s.StorePrefix == "") {
			s.StorePrefix = DefaultStolonStorePrefix
		}
		s.StorePrefix = strings.TrimPrefix(s.StorePrefix, "/")
		if unset("database", s.Database == "") {
			s.Database = "postgres"
		}
		s.Postgres.defaults()
		for k, v := range map[string]struct {
			dst *Duration
			def time.Duration
		}{
			"grace":            {&s.Grace, time.Minute},
			"catch_up_timeout": {&s.CatchUpTimeout, 30 * time.Second},
			"failover_timeout": {&s.FailoverTimeout, time.Minute},
			"rejoin_timeout":   {&s.RejoinTimeout, 10 * time.Minute},
		} {
			if unset(k, v.dst.Duration == 0) {
				v.dst.Duration = v.def
			}
		}
	}
}

// validateStolon checks [[stolon.clusters]].
func (c *Config) validateStolon(d *decoder) {
	if len(c.Stolon.Clusters) == 0 {
		return
	}
	if c.Consul.Address == "" {
		d.add("stolon.clusters", "needs consul.address: Vigie reads and writes the Stolon clusters' keys through the [consul] connection")
	}
	seen := map[string]int{}
	from := len(d.problems)
	for i := range c.Stolon.Clusters {
		c.validateStolonCluster(d, i, seen)
	}
	// A key that did not decode (rejoin_timeout = 600) was reported as
	// such: its zero value is not reported again. A key the entry leaves
	// out, such as a missing name or postgres.host, is located at its
	// table, the line of its [[stolon.clusters]].
	reported := map[string]bool{}
	for _, p := range d.problems[:from] {
		reported[p.Key] = true
	}
	ps := d.problems[:from]
	for _, p := range d.problems[from:] {
		if reported[p.Key] {
			continue
		}
		for k := p.Key; p.Line == 0 && strings.Contains(k, "."); {
			k = k[:strings.LastIndexByte(k, '.')]
			p.Line = d.lines[k]
		}
		ps = append(ps, p)
	}
	d.problems = ps
}

func (c *Config) validateStolonCluster(d *decoder, i int, seen map[string]int) {
	s := &c.Stolon.Clusters[i]
	key := func(k string) string { return fmt.Sprintf("stolon.clusters[%d].%s", i, k) }
	switch {
	case s.Name == "":
		d.add(key("name"), "must be set: stolon's --cluster-name (its keys are under <store_prefix>/<name>/)")
	case !stolonName.MatchString(s.Name) || s.Name == "." || s.Name == "..":
		d.add(key("name"), "must be letters, digits, '.', '-' or '_' (it is a Consul key segment), got %q", s.Name)
	default:
		if j, dup := seen[s.Name]; dup {
			d.add(key("name"), "%q is already the name of stolon.clusters[%d]", s.Name, j)
		}
		seen[s.Name] = i
	}
	if why := storePrefixProblem(s.StorePrefix); why != "" {
		d.add(key("store_prefix"), "%s, got %q (stolon's --store-prefix, by default %q)", why, s.StorePrefix, DefaultStolonStorePrefix)
	}
	if s.Database == "" {
		d.add(key("database"), `must not be empty (default "postgres")`)
	}
	c.validatePGServer(d, key("postgres"), s.Postgres, true, "a stolon-proxy of the cluster")
	for _, k := range []struct {
		name string
		v    Duration
	}{
		{"grace", s.Grace}, {"catch_up_timeout", s.CatchUpTimeout},
		{"failover_timeout", s.FailoverTimeout}, {"rejoin_timeout", s.RejoinTimeout},
	} {
		if k.v.Duration <= 0 {
			d.add(key(k.name), "must be greater than 0")
		}
	}
}

// storePrefixProblem explains why p is not a usable Consul key prefix, or
// returns "". Stolon would clean some of these up on its side, Vigie would
// then read other keys than it does.
func storePrefixProblem(p string) string {
	if p == "" {
		return "must not be empty"
	}
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "":
			return "must not have empty segments (a doubled, leading or trailing '/')"
		case seg == "." || seg == "..":
			return `must not have "." or ".." segments`
		case strings.TrimFunc(seg, unicode.IsSpace) != seg:
			return "must not have spaces around a segment"
		case strings.ContainsFunc(seg, unicode.IsControl):
			return "must not have control characters"
		}
	}
	return ""
}

// stolonPaths are the file paths of [[stolon.clusters]], made relative to
// the config file's directory with the others.
func (c *Config) stolonPaths() []*string {
	var ps []*string
	for i := range c.Stolon.Clusters {
		s := &c.Stolon.Clusters[i]
		ps = append(ps, &s.TokenFile, &s.Postgres.PasswordFile, &s.Postgres.CAFile)
	}
	return ps
}

// resolveStolonSecrets reads each cluster's token and password, from
// token_file and postgres.password_file, or VIGIE_STOLON_<NAME>_TOKEN and
// VIGIE_STOLON_<NAME>_PASSWORD (MAIN_DB for main-db).
func (c *Config) resolveStolonSecrets(getenv func(string) string, d *decoder) {
	for i := range c.Stolon.Clusters {
		s := &c.Stolon.Clusters[i]
		env := "VIGIE_STOLON_" + envName(s.Name)
		c.resolveSecret(getenv, d, fmt.Sprintf("stolon.clusters[%d].token_file", i), env+"_TOKEN", s.TokenFile, &s.Token)
		c.resolveSecret(getenv, d, fmt.Sprintf("stolon.clusters[%d].postgres.password_file", i), env+"_PASSWORD", s.Postgres.PasswordFile, &s.Postgres.Password)
	}
}
