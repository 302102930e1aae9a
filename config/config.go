// Package config loads Vigie's TOML configuration.
//
// Every value comes from, in decreasing priority: the config file, the
// environment (only for the keys listed in config.example.toml, mirroring the
// variables the nomad and consul CLIs read), then the built-in default. Load
// reports every problem at once, each with its file, line and dotted key, and
// suggests the nearest valid key for a misspelt one.
//
// Secrets are never written in the file: each has a *_file key naming a file
// that holds it, or an environment variable. Relative paths in *_file keys
// and data_dir are relative to the directory of the config file, so a config
// directory can be moved as a whole; without a file they are relative to the
// working directory.
package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/vigie/vigie/internal/suggest"
)

// Config is the whole configuration. See config.example.toml for the meaning
// of each key.
type Config struct {
	DataDir  string   `toml:"data_dir"`
	Log      Log      `toml:"log"`
	HTTP     HTTP     `toml:"http"`
	Matrix   Matrix   `toml:"matrix"`
	Commands Commands `toml:"commands"`
	Outbox   Outbox   `toml:"outbox"`
	Console  Console  `toml:"console"`
	Nomad    Nomad    `toml:"nomad"`
	Consul   Consul   `toml:"consul"`
	Alerts   Alerts   `toml:"alerts"`
	LDAP     LDAP     `toml:"ldap"`
	Policy   Policy   `toml:"policy"`
	Backups  Backups  `toml:"backups"`
	S3       S3       `toml:"s3"`
	Garage   Garage   `toml:"garage"`
	Stolon   Stolon   `toml:"stolon"`
	HA       HA       `toml:"ha"`

	File string `toml:"-"` // path it was loaded from, "" for defaults

	lines   map[string]int    // dotted key → line in File, for later problems
	fromEnv map[string]string // dotted key → environment variable it came from
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`  // trace, debug, info, warn or error
	Format string `toml:"format"` // console or json
}

// HTTP configures the metrics and health endpoint.
type HTTP struct {
	Listen string `toml:"listen"` // host:port; "" disables the endpoint
}

// Matrix configures the bot's Matrix account.
type Matrix struct {
	Homeserver      string   `toml:"homeserver"` // http(s) URL
	UserID          string   `toml:"user_id"`    // @local:server
	AccessTokenFile string   `toml:"access_token_file"`
	PasswordFile    string   `toml:"password_file"`
	PickleKeyFile   string   `toml:"pickle_key_file"`
	DeviceName      string   `toml:"device_name"`
	CommandPrefix   string   `toml:"command_prefix"`   // non-empty, no spaces
	AllowedInviters []string `toml:"allowed_inviters"` // "@user:server" or ":server"
	Encryption      bool     `toml:"encryption"`
	EventGrace      Duration `toml:"event_grace"`

	// Resolved from the *_file keys or the environment; not TOML keys.
	AccessToken Secret `toml:"-"`
	Password    Secret `toml:"-"`
	PickleKey   Secret `toml:"-"`
}

// Commands bounds the execution of chat commands.
type Commands struct {
	Timeout       Duration `toml:"timeout"`
	MaxReplyBytes int      `toml:"max_reply_bytes"` // >= 1024
}

// Outbox configures retries of messages that could not be sent.
type Outbox struct {
	MinBackoff  Duration `toml:"min_backoff"`
	MaxBackoff  Duration `toml:"max_backoff"`
	GiveUpAfter Duration `toml:"give_up_after"`
}

// Console configures the local "vigie console" REPL.
type Console struct {
	Sender string `toml:"sender"` // Matrix user ID the commands appear to come from
}

// LDAP configures who the chat users are and which groups they are in.
type LDAP struct {
	URL              string   `toml:"url"`       // ldap://host:389 (with start_tls) or ldaps://host:636; "" disables LDAP
	StartTLS         bool     `toml:"start_tls"` // upgrade ldap:// with StartTLS before binding
	CAFile           string   `toml:"ca_file"`   // PEM bundle to verify the server; system roots otherwise
	BindDN           string   `toml:"bind_dn"`   // service account
	BindPasswordFile string   `toml:"bind_password_file"`
	Timeout          Duration `toml:"timeout"`   // per request; slower means "cannot check", never allow
	CacheTTL         Duration `toml:"cache_ttl"` // how long a user's groups are reused ("0s": never)
	UserBaseDN       string   `toml:"user_base_dn"`
	UserFilter       string   `toml:"user_filter"` // extra condition on user entries, e.g. (objectClass=inetOrgPerson)
	Identity         string   `toml:"identity"`    // "localpart" or "attribute"
	LocalpartAttr    string   `toml:"localpart_attribute"`
	LocalpartDomains []string `toml:"localpart_domains"` // homeservers whose localparts map to LDAP users
	MatrixIDAttr     string   `toml:"matrix_id_attribute"`
	GroupStrategy    string   `toml:"group_strategy"` // memberOf, member, uniqueMember, memberUid
	GroupBaseDN      string   `toml:"group_base_dn"`
	BindPassword     Secret   `toml:"-"`
}

// Policy says who may run which command, and where.
type Policy struct {
	ReadOpen        bool         `toml:"read_open"`            // read-only commands need no LDAP group
	ConfirmTimeout  Duration     `toml:"confirm_timeout"`      // how long a confirmation code is valid
	MutationsPerMin int          `toml:"mutations_per_minute"` // per user, for commands that change things
	AuditRoom       string       `toml:"audit_room"`           // also post audit lines here ("" : only the store)
	MaxSilence      Duration     `toml:"max_silence"`          // the longest silence
	MaxScale        int          `toml:"max_scale"`            // the largest count scale accepts
	Rules           []PolicyRule `toml:"rules"`
}

// PolicyRule allows commands to members of groups, optionally only in some
// rooms, optionally with a second person's approval.
type PolicyRule struct {
	Commands  []string `toml:"commands"`   // command names
	Groups    []string `toml:"groups"`     // group DNs
	Rooms     []string `toml:"rooms"`      // room IDs; empty: any room
	TwoPerson bool     `toml:"two_person"` // a second user must approve
	// TwoPersonSet: two_person is in the file; otherwise each command's
	// own default applies (restores need a second person).
	TwoPersonSet bool     `toml:"-"`
	Approvers    []string `toml:"approvers"` // group DNs of approvers (default: Groups)
}

// Alerts configures the incident pipeline and where incidents are posted.
type Alerts struct {
	DisabledRules    []string    `toml:"disabled_rules"`    // built-in rules switched off, by name
	Severities       []string    `toml:"severities"`        // "rule=severity" overrides
	EditInterval     Duration    `toml:"edit_interval"`     // at most one edit per incident per interval
	RoomCap          int         `toml:"room_cap"`          // new incident messages per room per minute
	ThreadCap        int         `toml:"thread_cap"`        // thread details per incident per minute
	FlapWindow       Duration    `toml:"flap_window"`       // state changes counted over this window
	FlapThreshold    int         `toml:"flap_threshold"`    // changes in the window that make an incident flapping
	ReminderInterval Duration    `toml:"reminder_interval"` // remind unacknowledged critical incidents; "0s" never
	BlindAfter       Duration    `toml:"blind_after"`       // a source unreadable this long is a critical incident
	HealthyAfter     Duration    `toml:"healthy_after"`     // an allocation without deployment health is healthy once running this long
	MaxHold          Duration    `toml:"max_hold"`          // longest a check is held back by a deployment, drain or maintenance
	Rooms            []AlertRoom `toml:"rooms"`
}

// AlertRoom routes matching incidents to one Matrix room. Empty lists
// match anything.
type AlertRoom struct {
	Room        string   `toml:"room"`         // room ID, "!abc:example.org"
	MinSeverity string   `toml:"min_severity"` // info, warning, critical
	Namespaces  []string `toml:"namespaces"`   // globs
	Jobs        []string `toml:"jobs"`
	Nodes       []string `toml:"nodes"`
	Checks      []string `toml:"checks"`
	Services    []string `toml:"services"`
}

// Nomad configures the Nomad API client and its event stream watcher.
type Nomad struct {
	Address       string   `toml:"address"`
	Region        string   `toml:"region"`
	Namespace     string   `toml:"namespace"`
	TokenFile     string   `toml:"token_file"`
	Watch         bool     `toml:"watch"`          // follow the event stream for alerts
	Topics        []string `toml:"topics"`         // event stream topics
	Namespaces    []string `toml:"namespaces"`     // namespaces watched; "*" is all
	StreamTimeout Duration `toml:"stream_timeout"` // a stream silent this long is dead
	JobspecsDir   string   `toml:"jobspecs_dir"`   // jobspecs deploy registers; "" for none
	TLS           TLS      `toml:"tls"`
	Token         Secret   `toml:"-"`
}

// Consul configures the Consul API client and its health watcher.
type Consul struct {
	Address     string   `toml:"address"`
	Datacenter  string   `toml:"datacenter"`
	TokenFile   string   `toml:"token_file"`
	Watch       bool     `toml:"watch"`        // follow health checks for alerts
	Wait        Duration `toml:"wait"`         // blocking query wait, at most 10m
	MinInterval Duration `toml:"min_interval"` // least time between two health queries
	TLS         TLS      `toml:"tls"`
	Token       Secret   `toml:"-"`
}

// Default returns the built-in defaults, without reading any file or the
// environment.
func Default() *Config {
	return &Config{
		DataDir: "./vigie-data",
		Log:     Log{Level: "info", Format: "console"},
		HTTP:    HTTP{Listen: "127.0.0.1:9464"},
		Matrix: Matrix{
			DeviceName:    "Vigie",
			CommandPrefix: "!vigie",
			Encryption:    true,
			EventGrace:    Duration{10 * time.Second},
		},
		Commands: Commands{Timeout: Duration{60 * time.Second}, MaxReplyBytes: 16000},
		Outbox: Outbox{
			MinBackoff:  Duration{time.Second},
			MaxBackoff:  Duration{5 * time.Minute},
			GiveUpAfter: Duration{24 * time.Hour},
		},
		Console: Console{Sender: "@console:localhost"},
		Nomad: Nomad{
			Address: "http://127.0.0.1:4646", Watch: true,
			Topics:        []string{"Allocation", "Deployment", "Evaluation", "Job", "Node"},
			Namespaces:    []string{"*"},
			StreamTimeout: Duration{60 * time.Second},
		},
		LDAP: LDAP{
			Timeout: Duration{5 * time.Second}, CacheTTL: Duration{2 * time.Minute},
			Identity: "localpart", LocalpartAttr: "uid", GroupStrategy: "memberOf",
		},
		Policy: Policy{ConfirmTimeout: Duration{2 * time.Minute}, MutationsPerMin: 5, MaxSilence: Duration{30 * 24 * time.Hour}, MaxScale: 100},
		Alerts: Alerts{
			EditInterval: Duration{5 * time.Second}, RoomCap: 10, ThreadCap: 5,
			FlapWindow: Duration{10 * time.Minute}, FlapThreshold: 4, ReminderInterval: Duration{30 * time.Minute},
			BlindAfter: Duration{time.Minute}, HealthyAfter: Duration{2 * time.Minute}, MaxHold: Duration{30 * time.Minute},
		},
		Consul: Consul{
			Address: "http://127.0.0.1:8500", Watch: true,
			Wait: Duration{5 * time.Minute}, MinInterval: Duration{2 * time.Second},
		},
		Backups: Backups{PartSizeMiB: 16, ParallelParts: 2, Timeout: Duration{6 * time.Hour}},
		S3:      S3{Region: "garage", Prefix: "vigie"},
		HA:      haDefaults,
	}
}

// Load reads the config file at path, or only the defaults and environment
// when path is "". A file that cannot be read yields a plain error wrapping
// the os error; anything wrong with its content yields *Errors, and, when
// the file is valid TOML, the configuration as far as it could be read,
// so that "check-config" can go on checking it.
func Load(path string) (*Config, error) {
	return load(path, os.Getenv)
}

// load is Load with the environment injected, for tests.
func load(path string, getenv func(string) string) (*Config, error) {
	c := Default()
	c.File = path
	d := &decoder{file: path}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if !d.decodeDocument(data, c) {
			return nil, &Errors{Problems: d.problems}
		}
	}
	c.lines = d.lines
	c.applyEnv(getenv, d)
	c.backupDefaults()
	c.stolonDefaults()
	c.haDefaults(os.Hostname)
	c.validate(d)
	c.validateHA(d)
	if path != "" {
		c.resolvePaths(path)
	}
	c.checkJobspecsDir(d)
	c.validateTLS(d, "nomad", c.Nomad.Address, c.Nomad.TLS)
	c.validateTLS(d, "consul", c.Consul.Address, c.Consul.TLS)
	c.validateTLS(d, "s3", c.S3.Endpoint, c.S3.TLS)
	c.resolveSecrets(getenv, d)
	c.resolveBackupSecrets(getenv, d)
	c.resolveStolonSecrets(getenv, d)
	if c.LDAP.URL != "" && c.LDAP.BindDN != "" && !c.LDAP.BindPassword.IsSet() && c.LDAP.BindPasswordFile == "" {
		d.add("ldap.bind_dn", "needs its password: bind_password_file, or the environment variable VIGIE_LDAP_BIND_PASSWORD")
	}
	if len(d.problems) > 0 {
		sortProblems(d.problems)
		return c, &Errors{Problems: d.problems}
	}
	return c, nil
}

// Line returns the line of a dotted key in the config file, 0 if it is not
// there.
func (c *Config) Line(key string) int {
	return c.lines[key]
}

// inFile reports whether the file sets key, which then wins over the
// environment.
func (c *Config) inFile(key string) bool {
	_, ok := c.lines[key]
	return ok
}

// applyEnv takes the variables the nomad and consul CLIs honour, for keys
// the file leaves unset, so Vigie talks to the same cluster as they do.
func (c *Config) applyEnv(getenv func(string) string, d *decoder) {
	c.fromEnv = map[string]string{}
	set := func(key, env string, dst *string) {
		if v := getenv(env); v != "" && !c.inFile(key) {
			*dst = v
			c.fromEnv[key] = env
		}
	}
	set("nomad.address", "NOMAD_ADDR", &c.Nomad.Address)
	set("nomad.region", "NOMAD_REGION", &c.Nomad.Region)
	set("nomad.namespace", "NOMAD_NAMESPACE", &c.Nomad.Namespace)
	set("nomad.tls.ca_file", "NOMAD_CACERT", &c.Nomad.TLS.CAFile)
	set("nomad.tls.cert_file", "NOMAD_CLIENT_CERT", &c.Nomad.TLS.CertFile)
	set("nomad.tls.key_file", "NOMAD_CLIENT_KEY", &c.Nomad.TLS.KeyFile)
	set("nomad.tls.server_name", "NOMAD_TLS_SERVER_NAME", &c.Nomad.TLS.ServerName)
	set("consul.tls.ca_file", "CONSUL_CACERT", &c.Consul.TLS.CAFile)
	set("consul.tls.cert_file", "CONSUL_CLIENT_CERT", &c.Consul.TLS.CertFile)
	set("consul.tls.key_file", "CONSUL_CLIENT_KEY", &c.Consul.TLS.KeyFile)
	set("consul.tls.server_name", "CONSUL_TLS_SERVER_NAME", &c.Consul.TLS.ServerName)
	set("consul.address", "CONSUL_HTTP_ADDR", &c.Consul.Address)
	if c.fromEnv["consul.address"] == "" {
		return
	}
	// Like the consul CLI: CONSUL_HTTP_ADDR may omit the scheme, and
	// CONSUL_HTTP_SSL=true upgrades it to https.
	addr := c.Consul.Address
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	if v := getenv("CONSUL_HTTP_SSL"); v != "" {
		ssl, err := strconv.ParseBool(v)
		if err != nil {
			d.add("consul.address", "CONSUL_HTTP_SSL must be true or false, got %q", v)
		}
		if rest, ok := strings.CutPrefix(addr, "http://"); ssl && ok {
			addr = "https://" + rest
		}
	}
	c.Consul.Address = addr
}

// resolvePaths makes relative paths relative to the config file's directory.
func (c *Config) resolvePaths(path string) {
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	resolve := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for _, p := range []*string{
		&c.DataDir,
		&c.Matrix.AccessTokenFile, &c.Matrix.PasswordFile, &c.Matrix.PickleKeyFile,
		&c.Nomad.TokenFile, &c.Nomad.JobspecsDir, &c.Consul.TokenFile,
		&c.Nomad.TLS.CAFile, &c.Nomad.TLS.CertFile, &c.Nomad.TLS.KeyFile,
		&c.Consul.TLS.CAFile, &c.Consul.TLS.CertFile, &c.Consul.TLS.KeyFile,
		&c.LDAP.CAFile, &c.LDAP.BindPasswordFile,
		&c.S3.AccessKeyIDFile, &c.S3.SecretAccessKeyFile, &c.Garage.AdminTokenFile,
		&c.S3.TLS.CAFile, &c.S3.TLS.CertFile, &c.S3.TLS.KeyFile,
	} {
		resolve(p)
	}
	for i := range c.Backups.Targets {
		t := &c.Backups.Targets[i]
		for _, p := range []*string{&t.Postgres.PasswordFile, &t.Postgres.CAFile, &t.Verify.PasswordFile, &t.Verify.CAFile, &t.TokenFile} {
			resolve(p)
		}
		if strings.Contains(t.PgDumpPath, "/") { // a bare name is looked up in PATH
			resolve(&t.PgDumpPath)
		}
	}
	for _, p := range c.stolonPaths() {
		resolve(p)
	}
}

// secretSpec describes one secret: the *_file key and the environment
// variable that can provide it, and the inline key users might try instead.
type secretSpec struct {
	table, inline string // refused inline key, e.g. "matrix", "access_token"
	fileKey, env  string
	file          func(*Config) string
	dst           func(*Config) *Secret
}

var secretSpecs = []secretSpec{
	{"ldap", "bind_password", "ldap.bind_password_file", "VIGIE_LDAP_BIND_PASSWORD",
		func(c *Config) string { return c.LDAP.BindPasswordFile },
		func(c *Config) *Secret { return &c.LDAP.BindPassword }},
	{"matrix", "access_token", "matrix.access_token_file", "VIGIE_MATRIX_ACCESS_TOKEN",
		func(c *Config) string { return c.Matrix.AccessTokenFile },
		func(c *Config) *Secret { return &c.Matrix.AccessToken }},
	{"matrix", "password", "matrix.password_file", "VIGIE_MATRIX_PASSWORD",
		func(c *Config) string { return c.Matrix.PasswordFile },
		func(c *Config) *Secret { return &c.Matrix.Password }},
	{"matrix", "pickle_key", "matrix.pickle_key_file", "VIGIE_MATRIX_PICKLE_KEY",
		func(c *Config) string { return c.Matrix.PickleKeyFile },
		func(c *Config) *Secret { return &c.Matrix.PickleKey }},
	{"nomad", "token", "nomad.token_file", "NOMAD_TOKEN",
		func(c *Config) string { return c.Nomad.TokenFile },
		func(c *Config) *Secret { return &c.Nomad.Token }},
	{"consul", "token", "consul.token_file", "CONSUL_HTTP_TOKEN",
		func(c *Config) string { return c.Consul.TokenFile },
		func(c *Config) *Secret { return &c.Consul.Token }},
	{"s3", "access_key_id", "s3.access_key_id_file", "AWS_ACCESS_KEY_ID",
		func(c *Config) string { return c.S3.AccessKeyIDFile },
		func(c *Config) *Secret { return &c.S3.AccessKeyID }},
	{"s3", "secret_access_key", "s3.secret_access_key_file", "AWS_SECRET_ACCESS_KEY",
		func(c *Config) string { return c.S3.SecretAccessKeyFile },
		func(c *Config) *Secret { return &c.S3.SecretAccessKey }},
	{"garage", "admin_token", "garage.admin_token_file", "GARAGE_ADMIN_TOKEN",
		func(c *Config) string { return c.Garage.AdminTokenFile },
		func(c *Config) *Secret { return &c.Garage.AdminToken }},
}

// inlineSecret finds the secret an unknown key was probably meant to hold,
// such as matrix.access_token or matrix.pasword.
func inlineSecret(path []string) (secretSpec, bool) {
	if len(path) != 2 {
		return secretSpec{}, false
	}
	var specs []secretSpec
	var names []string
	for _, s := range secretSpecs {
		if s.table == path[0] {
			specs = append(specs, s)
			names = append(names, s.inline)
		}
	}
	best, ok := suggest.Closest(path[1], names)
	if !ok {
		return secretSpec{}, false
	}
	for _, s := range specs {
		if s.inline == best {
			return s, true
		}
	}
	return secretSpec{}, false
}

// maxSecretSize bounds secret files: a token is tiny, and a bound keeps a
// mistaken path (a log file, /dev/zero) from being read whole.
const maxSecretSize = 64 << 10

// resolveSecrets fills each secret from its *_file key if set, else from its
// environment variable. A file that is set but unusable is an error rather
// than a silent fallback to the environment.
func (c *Config) resolveSecrets(getenv func(string) string, d *decoder) {
	for _, s := range secretSpecs {
		c.resolveSecret(getenv, d, s.fileKey, s.env, s.file(c), s.dst(c))
	}
}

// readSecret reads a secret file, dropping the trailing newline editors and
// "echo" add. Errors never quote the content.
func readSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot read secret file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return "", fmt.Errorf("cannot read secret file: %w", err)
	}
	if len(b) > maxSecretSize {
		return "", fmt.Errorf("secret file %s is larger than %d KiB; is it the right file?", path, maxSecretSize>>10)
	}
	v := strings.TrimRightFunc(string(b), unicode.IsSpace)
	if v == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return v, nil
}
