package config

import (
	"fmt"
	"strings"
	"time"
)

// Summary describes the effective configuration for "vigie check-config":
// where each important value came from, and for secrets only their source,
// never their value.
func (c *Config) Summary() string {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-17s %s\n", label, fmt.Sprintf(format, args...))
	}
	file := c.File
	if file == "" {
		file = "none (defaults and environment only)"
	}
	line("config file", "%s", file)
	line("data dir", "%s", c.DataDir)
	line("log", "level %s, format %s", c.Log.Level, c.Log.Format)
	listen := c.HTTP.Listen
	if listen == "" {
		listen = "disabled"
	}
	line("http listen", "%s", listen)

	m := &c.Matrix
	line("matrix", "%s on %s", orNotSet(m.UserID), orNotSet(m.Homeserver))
	line("  device", "%s, command prefix %q", m.DeviceName, m.CommandPrefix)
	line("  access token", "%s", secretSource(m.AccessToken))
	line("  password", "%s", secretSource(m.Password))
	if m.Encryption {
		line("  encryption", "on, pickle key %s", secretSource(m.PickleKey))
	} else {
		line("  encryption", "off")
	}
	inviters := "nobody"
	if len(m.AllowedInviters) > 0 {
		inviters = strings.Join(m.AllowedInviters, ", ")
	}
	line("  inviters", "%s", inviters)
	line("  event grace", "%s", m.EventGrace)

	line("commands", "timeout %s, replies up to %d bytes", c.Commands.Timeout, c.Commands.MaxReplyBytes)
	line("outbox", "retry every %s to %s, give up after %s", c.Outbox.MinBackoff, c.Outbox.MaxBackoff, c.Outbox.GiveUpAfter)
	line("console sender", "%s", c.Console.Sender)
	line("nomad", "%s%s, region %s%s, namespace %s%s, token %s",
		c.Nomad.Address, c.fromEnvNote("nomad.address"),
		orDefault(c.Nomad.Region), c.fromEnvNote("nomad.region"),
		orDefault(c.Nomad.Namespace), c.fromEnvNote("nomad.namespace"),
		secretSource(c.Nomad.Token))
	line("  tls", "%s", c.Nomad.TLS.describe())
	line("consul", "%s%s, datacenter %s, token %s",
		c.Consul.Address, c.fromEnvNote("consul.address"),
		orDefault(c.Consul.Datacenter), secretSource(c.Consul.Token))
	line("  tls", "%s", c.Consul.TLS.describe())
	for _, s := range c.Stolon.Clusters {
		token := "consul's"
		if s.Token.IsSet() {
			token = secretSource(s.Token)
		}
		p := s.Postgres
		line("stolon "+s.Name, "keys %s, token %s", s.KeyPrefix(), token)
		line("  postgres", "%s:%d, database %s, user %s, sslmode %s, password %s",
			p.Host, p.Port, s.Database, p.User, p.SSLMode, secretSource(p.Password))
		lag := "the cluster's maxStandbyLag"
		if s.MaxLag > 0 {
			lag = s.MaxLag.String()
		}
		line("  alerts", "lag beyond %s or a proxy not following, for %s", lag, s.Grace)
		line("  failover", "catch up within %s, new master within %s, old one back within %s",
			s.CatchUpTimeout, s.FailoverTimeout, s.RejoinTimeout)
	}
	if h := c.HA; h.Enabled {
		line("ha", "instance %s, lock %s (session TTL %s, lock delay %s), state to s3 %sha/state/ every %s",
			h.Instance, h.LockKey, h.SessionTTL, h.LockDelay, c.ReplicaPrefix(), h.ReplicateInterval)
	} else {
		line("ha", "off (one instance)")
	}
	return b.String()
}

// describe says how the server's certificate is checked and whether
// Vigie shows one.
func (t TLS) describe() string {
	s := "server checked against the system's CAs"
	if t.CAFile != "" {
		s = "server checked against " + t.CAFile
	}
	if t.ServerName != "" {
		s += " as " + t.ServerName
	}
	if t.CertFile != "" {
		s += ", client certificate " + t.CertFile
	}
	return s
}

func secretSource(s Secret) string {
	if !s.IsSet() {
		return "not set"
	}
	return "from " + s.Source
}

func orNotSet(s string) string {
	if s == "" {
		return "(not set)"
	}
	return s
}

// orDefault names the empty value of region, namespace and datacenter, which
// lets the server pick its own default.
func orDefault(s string) string {
	if s == "" {
		return "(server default)"
	}
	return s
}

// BackupSummary describes the backup targets, with the next three runs
// of each schedule after now, for "vigie check-config".
func (c *Config) BackupSummary(now time.Time) string {
	if len(c.Backups.Targets) == 0 {
		return ""
	}
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-17s %s\n", label, fmt.Sprintf(format, args...))
	}
	line("s3", "%s, bucket %s, prefix %s, key %s", c.S3.Endpoint, c.S3.Bucket, c.S3.Prefix, secretSource(c.S3.AccessKeyID))
	for _, t := range c.Backups.Targets {
		age := "never stale"
		if t.MaxAge.Duration > 0 {
			age = "stale after " + t.MaxAge.String()
		}
		line("backup "+t.Name, "%s, keep last %d, daily %d, weekly %d, monthly %d, %s",
			t.Kind, t.KeepLast, t.KeepDaily, t.KeepWeekly, t.KeepMonthly, age)
		line("  backups", "%s", describeSchedule(t.Schedule, now))
		line("  verifications", "%s", describeSchedule(t.VerifySchedule, now))
	}
	if c.Backups.ReportSchedule != "" {
		line("backup report", "to %s, %s", c.Backups.ReportRoom, describeSchedule(c.Backups.ReportSchedule, now))
	}
	return b.String()
}

// describeSchedule names a schedule and its next three runs.
func describeSchedule(spec string, now time.Time) string {
	if spec == "" {
		return "on demand only"
	}
	runs, err := NextRuns(spec, now, 3)
	if err != nil {
		return fmt.Sprintf("%q: %v", spec, err)
	}
	var next []string
	for _, r := range runs {
		next = append(next, r.UTC().Format("2006-01-02 15:04 UTC"))
	}
	return fmt.Sprintf("%q, next %s", spec, strings.Join(next, ", "))
}
