package config

import (
	"fmt"
	"strings"
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
