package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/vigie/vigie/internal/suggest"
)

var (
	logLevels  = []string{"trace", "debug", "info", "warn", "error"}
	logFormats = []string{"console", "json"}
)

// minReplyBytes keeps replies long enough to carry an error message and the
// "truncated" notice.
const minReplyBytes = 1024

// validate checks values that decoded fine but are not acceptable.
func (c *Config) validate(d *decoder) {
	if c.DataDir == "" {
		d.add("data_dir", "must not be empty")
	}
	c.oneOf(d, "log.level", c.Log.Level, logLevels)
	c.oneOf(d, "log.format", c.Log.Format, logFormats)
	if l := c.HTTP.Listen; l != "" {
		if _, port, err := net.SplitHostPort(l); err != nil || port == "" {
			d.add("http.listen", `must be host:port such as "127.0.0.1:9464", or "" to disable, got %q`, l)
		}
	}

	m := &c.Matrix
	if m.Homeserver != "" {
		c.checkURL(d, "matrix.homeserver", m.Homeserver, "https://matrix.example.org")
	}
	if m.UserID != "" {
		if why := userIDProblem(m.UserID); why != "" {
			d.add("matrix.user_id", `must be a Matrix user ID such as "@vigie:example.org", got %q (%s)`, m.UserID, why)
		}
	}
	for i, e := range m.AllowedInviters {
		if why := inviterProblem(e); why != "" {
			d.addAt("matrix.allowed_inviters", d.entryLine("matrix.allowed_inviters", i),
				`entry %q: must be a user ID such as "@alice:example.org" or a whole server such as ":example.org" (%s)`, e, why)
		}
	}
	if m.DeviceName == "" {
		d.add("matrix.device_name", "must not be empty")
	}
	switch {
	case m.CommandPrefix == "":
		d.add("matrix.command_prefix", "must not be empty")
	case strings.ContainsFunc(m.CommandPrefix, unicode.IsSpace):
		d.add("matrix.command_prefix", "must not contain spaces, got %q", m.CommandPrefix)
	}

	if c.Commands.Timeout.Duration <= 0 {
		d.add("commands.timeout", "must be greater than 0")
	}
	if c.Commands.MaxReplyBytes < minReplyBytes {
		d.add("commands.max_reply_bytes", "must be at least %d, got %d", minReplyBytes, c.Commands.MaxReplyBytes)
	}

	o := &c.Outbox
	for key, v := range map[string]Duration{
		"outbox.min_backoff":   o.MinBackoff,
		"outbox.max_backoff":   o.MaxBackoff,
		"outbox.give_up_after": o.GiveUpAfter,
	} {
		if v.Duration <= 0 {
			d.add(key, "must be greater than 0")
		}
	}
	if o.MinBackoff.Duration > o.MaxBackoff.Duration {
		// Blame the key the user wrote; both when they wrote both.
		key := "outbox.min_backoff"
		if c.inFile("outbox.max_backoff") && !c.inFile(key) {
			key = "outbox.max_backoff"
		}
		d.add(key, "min_backoff (%s) must not exceed max_backoff (%s)", o.MinBackoff, o.MaxBackoff)
	}

	if why := userIDProblem(c.Console.Sender); why != "" {
		d.add("console.sender", `must be a Matrix user ID such as "@console:localhost", got %q (%s)`, c.Console.Sender, why)
	}
	c.checkURL(d, "nomad.address", c.Nomad.Address, "http://127.0.0.1:4646")
	c.checkURL(d, "consul.address", c.Consul.Address, "http://127.0.0.1:8500")
	c.validateWatchers(d)
	c.validateAlerts(d)
	c.validateLDAP(d)
	c.validatePolicy(d)
	c.validateBackups(d)
	c.validateStolon(d)
}

var (
	identities      = []string{"localpart", "attribute"}
	groupStrategies = []string{"memberOf", "member", "uniqueMember", "memberUid"}
)

func (c *Config) validateLDAP(d *decoder) {
	l := &c.LDAP
	if l.URL == "" {
		if len(c.Policy.Rules) > 0 {
			d.add("ldap.url", "policy rules name LDAP groups, so an LDAP server is required")
		}
		return
	}
	u, err := url.Parse(l.URL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "ldap" && u.Scheme != "ldaps"):
		d.add("ldap.url", `must be ldap://host:389 or ldaps://host:636, got %q`, l.URL)
	case u.Scheme == "ldaps" && l.StartTLS:
		d.add("ldap.start_tls", "StartTLS is for ldap:// URLs; ldaps:// is already encrypted")
	}
	if l.BindDN == "" {
		d.add("ldap.bind_dn", "must name the service account Vigie searches with")
	}
	if l.Timeout.Duration <= 0 {
		d.add("ldap.timeout", "must be greater than 0")
	}
	if l.UserBaseDN == "" {
		d.add("ldap.user_base_dn", "must be set, e.g. ou=people,dc=example,dc=org")
	}
	c.oneOf(d, "ldap.identity", l.Identity, identities)
	switch l.Identity {
	case "localpart":
		if l.LocalpartAttr == "" {
			d.add("ldap.localpart_attribute", "must be set, e.g. uid")
		}
		if len(l.LocalpartDomains) == 0 {
			d.add("ldap.localpart_domains", "must list the homeservers whose users are LDAP users, e.g. [\"example.org\"]")
		}
	case "attribute":
		if l.MatrixIDAttr == "" {
			d.add("ldap.matrix_id_attribute", "must name the attribute holding the full Matrix ID when identity = \"attribute\"")
		}
	}
	c.oneOf(d, "ldap.group_strategy", l.GroupStrategy, groupStrategies)
	if l.GroupStrategy != "memberOf" && l.GroupBaseDN == "" {
		d.add("ldap.group_base_dn", "must be set with group_strategy %q", l.GroupStrategy)
	}
}

func (c *Config) validatePolicy(d *decoder) {
	p := &c.Policy
	if p.ConfirmTimeout.Duration <= 0 {
		d.add("policy.confirm_timeout", "must be greater than 0")
	}
	if p.MutationsPerMin < 1 {
		d.add("policy.mutations_per_minute", "must be at least 1, got %d", p.MutationsPerMin)
	}
	if p.MaxSilence.Duration <= 0 {
		d.add("policy.max_silence", "must be greater than 0")
	}
	if p.MaxScale < 1 {
		d.add("policy.max_scale", "must be at least 1, got %d", p.MaxScale)
	}
	if p.AuditRoom != "" && (!strings.HasPrefix(p.AuditRoom, "!") || !strings.Contains(p.AuditRoom, ":")) {
		d.add("policy.audit_room", `must be a room ID such as "!audit:example.org", got %q`, p.AuditRoom)
	}
	for i, r := range p.Rules {
		key := entryKey("policy.rules", i)
		p.Rules[i].TwoPersonSet = c.inFile(key + ".two_person")
		if len(r.Commands) == 0 {
			d.add(key+".commands", "must name at least one command")
		}
		if len(r.Groups) == 0 {
			d.add(key+".groups", "must name at least one group DN")
		}
		for j, g := range append(slices.Clone(r.Groups), r.Approvers...) {
			if !strings.Contains(g, "=") {
				field := ".groups"
				if j >= len(r.Groups) {
					field, j = ".approvers", j-len(r.Groups)
				}
				d.addAt(key+field, d.entryLine(key+field, j), "entry %q: must be a group DN such as cn=ops,ou=groups,dc=example,dc=org", g)
			}
		}
		for j, room := range r.Rooms {
			if !strings.HasPrefix(room, "!") || !strings.Contains(room, ":") {
				d.addAt(key+".rooms", d.entryLine(key+".rooms", j), "entry %q: must be a room ID such as \"!ops:example.org\"", room)
			}
		}
	}
}

// Severities and rules are known to the incidents package, which config
// does not import: rule names are checked by "vigie check-config" itself.
var severities = []string{"info", "warning", "critical"}

func (c *Config) validateAlerts(d *decoder) {
	a := &c.Alerts
	for i, s := range a.Severities {
		rule, sev, ok := strings.Cut(s, "=")
		if !ok || rule == "" || !slices.Contains(severities, sev) {
			d.addAt("alerts.severities", d.entryLine("alerts.severities", i), `entry %q: write "rule=severity" with severity info, warning or critical`, s)
		}
	}
	for _, k := range []struct {
		key string
		v   Duration
	}{
		{"alerts.edit_interval", a.EditInterval}, {"alerts.flap_window", a.FlapWindow}, {"alerts.blind_after", a.BlindAfter},
		{"alerts.healthy_after", a.HealthyAfter}, {"alerts.max_hold", a.MaxHold},
	} {
		if k.v.Duration <= 0 {
			d.add(k.key, "must be greater than 0")
		}
	}
	for key, v := range map[string]int{"alerts.room_cap": a.RoomCap, "alerts.thread_cap": a.ThreadCap, "alerts.flap_threshold": a.FlapThreshold} {
		if v < 1 {
			d.add(key, "must be at least 1, got %d", v)
		}
	}
	for i, r := range a.Rooms {
		key := entryKey("alerts.rooms", i)
		if !strings.HasPrefix(r.Room, "!") || !strings.Contains(r.Room, ":") {
			d.add(key+".room", `must be a room ID such as "!abcdef:example.org" (room settings, Advanced), got %q`, r.Room)
		}
		if r.MinSeverity != "" && !slices.Contains(severities, r.MinSeverity) {
			c.oneOf(d, key+".min_severity", r.MinSeverity, severities)
		}
		for name, globs := range map[string][]string{"namespaces": r.Namespaces, "jobs": r.Jobs, "nodes": r.Nodes, "checks": r.Checks, "services": r.Services} {
			for j, g := range globs {
				if _, err := path.Match(g, ""); err != nil {
					d.addAt(key+"."+name, d.entryLine(key+"."+name, j), "entry %q: bad glob: %v", g, err)
				}
			}
		}
	}
}

// nomadTopics are the event stream topics of Nomad 1.11.
var nomadTopics = []string{"*", "ACLPolicy", "ACLRole", "ACLToken", "Allocation", "Deployment", "Evaluation", "Job", "Node", "NodePool", "Operator", "Service"}

func (c *Config) validateWatchers(d *decoder) {
	n := &c.Nomad
	if len(n.Topics) == 0 {
		d.add("nomad.topics", "must list at least one topic")
	}
	for i, topic := range n.Topics {
		if !slices.Contains(nomadTopics, topic) {
			msg := fmt.Sprintf("entry %q: not a Nomad event topic (%s)", topic, strings.Join(nomadTopics[1:], ", "))
			if near, ok := suggest.Closest(topic, nomadTopics); ok {
				msg = fmt.Sprintf("entry %q: not a Nomad event topic (did you mean %q?)", topic, near)
			}
			d.addAt("nomad.topics", d.entryLine("nomad.topics", i), "%s", msg)
		}
	}
	if len(n.Namespaces) == 0 {
		d.add("nomad.namespaces", `must list at least one namespace, or "*" for all`)
	}
	for i, ns := range n.Namespaces {
		if ns == "" || strings.ContainsFunc(ns, unicode.IsSpace) {
			d.addAt("nomad.namespaces", d.entryLine("nomad.namespaces", i), "entry %q: not a namespace name", ns)
		}
	}
	if n.StreamTimeout.Duration < time.Second {
		d.add("nomad.stream_timeout", "must be at least 1s, got %s", n.StreamTimeout)
	}
	cs := &c.Consul
	if cs.Wait.Duration <= 0 || cs.Wait.Duration > 10*time.Minute {
		d.add("consul.wait", "must be between 1s and 10m (Consul caps blocking queries at 10m), got %s", cs.Wait)
	}
	if cs.MinInterval.Duration <= 0 {
		d.add("consul.min_interval", "must be greater than 0")
	}
}

// checkJobspecsDir checks that nomad.jobspecs_dir, once made absolute,
// is a directory: a mistake there would otherwise only show at the first
// deploy of a jobspec.
func (c *Config) checkJobspecsDir(d *decoder) {
	dir := c.Nomad.JobspecsDir
	if dir == "" {
		return
	}
	switch fi, err := os.Stat(dir); {
	case err != nil:
		d.add("nomad.jobspecs_dir", "must be a directory of jobspecs: %v", err)
	case !fi.IsDir():
		d.add("nomad.jobspecs_dir", "must be a directory of jobspecs, %s is not one", dir)
	}
}

// fromEnvNote tells the user a bad value came from the environment, since
// the file's line cannot point at it.
func (c *Config) fromEnvNote(key string) string {
	if env := c.fromEnv[key]; env != "" {
		return " (from environment variable " + env + ")"
	}
	return ""
}

func (c *Config) oneOf(d *decoder, key, v string, allowed []string) {
	if slices.Contains(allowed, v) {
		return
	}
	hint := ""
	if best, ok := suggest.Closest(v, allowed); ok {
		hint = fmt.Sprintf(" (did you mean %q?)", best)
	}
	d.add(key, "must be one of %s; got %q%s", strings.Join(allowed, ", "), v, hint)
}

func (c *Config) checkURL(d *decoder, key, v, example string) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		d.add(key, "must be an http(s) URL such as %q, got %q%s", example, v, c.fromEnvNote(key))
	}
}

// userIDProblem explains why s is not a Matrix user ID ("@localpart:server"),
// or returns "". Localparts are checked loosely: historical IDs may use any
// printable character but ':'.
func userIDProblem(s string) string {
	switch {
	case len(s) > 255:
		return "longer than 255 bytes"
	case !strings.HasPrefix(s, "@"):
		return `it must start with "@"`
	}
	local, server, ok := strings.Cut(s[1:], ":")
	switch {
	case !ok:
		return `missing ":server"`
	case local == "":
		return "empty local part"
	case strings.ContainsFunc(local, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }):
		return "the local part contains spaces or control characters"
	}
	return serverNameProblem(server)
}

// inviterProblem explains why s is neither a user ID nor ":server".
func inviterProblem(s string) string {
	if server, ok := strings.CutPrefix(s, ":"); ok {
		return serverNameProblem(server)
	}
	return userIDProblem(s)
}

// serverNameProblem checks a Matrix server name: a DNS name, IPv4 or
// [IPv6] literal, with an optional port.
func serverNameProblem(s string) string {
	host, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		host, port = s[:i], s[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '+' {
			return fmt.Sprintf("invalid port %q", port)
		}
	}
	if h, ok := strings.CutPrefix(host, "["); ok {
		h, ok = strings.CutSuffix(h, "]")
		if ip := net.ParseIP(h); !ok || ip == nil || ip.To4() != nil {
			return "invalid IPv6 literal in server name"
		}
		return ""
	}
	if host == "" {
		return "empty server name"
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Sprintf("invalid character %q in server name", r)
		}
	}
	return ""
}

// MatrixProblems lists what "vigie run" needs beyond a valid file: an
// account (homeserver, user ID, exactly one credential) and, with
// encryption, a pickle key.
func (c *Config) MatrixProblems() []Problem {
	var ps []Problem
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{File: c.File, Line: c.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	m := &c.Matrix
	if m.Homeserver == "" {
		add("matrix.homeserver", `must be set to the homeserver URL, such as "https://matrix.example.org"`)
	}
	if m.UserID == "" {
		add("matrix.user_id", `must be set to the bot's user ID, such as "@vigie:example.org"`)
	}
	switch {
	case !m.AccessToken.IsSet() && !m.Password.IsSet():
		add("matrix.access_token_file", "no Matrix credential: set matrix.access_token_file or VIGIE_MATRIX_ACCESS_TOKEN (preferred), or matrix.password_file or VIGIE_MATRIX_PASSWORD")
	case m.AccessToken.IsSet() && m.Password.IsSet():
		add("matrix.password_file", "both an access token (from %s) and a password (from %s) are set; keep only one", m.AccessToken.Source, m.Password.Source)
	}
	if m.Encryption && !m.PickleKey.IsSet() {
		add("matrix.pickle_key_file", "encryption is on but no pickle key is set (it encrypts the bot's crypto keys at rest): generate one with `openssl rand -hex 32 > pickle.key` and point matrix.pickle_key_file at it, or set VIGIE_MATRIX_PICKLE_KEY (or set matrix.encryption = false)")
	}
	sortProblems(ps)
	return ps
}

// ValidateUserID checks a Matrix user ID given outside the file (--as).
func ValidateUserID(s string) error {
	if p := userIDProblem(s); p != "" {
		return fmt.Errorf("%q is not a Matrix user ID: %s", s, p)
	}
	return nil
}
