package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Backups configures what Vigie backs up to S3, when, what it keeps, and
// its daily report.
type Backups struct {
	ReportSchedule string         `toml:"report_schedule"` // cron spec of the report; "" for none
	ReportRoom     string         `toml:"report_room"`     // room ID the report is posted to
	PartSizeMiB    int            `toml:"part_size_mib"`   // multipart part size
	ParallelParts  int            `toml:"parallel_parts"`  // parts uploaded at once
	Timeout        Duration       `toml:"timeout"`         // longest one run may take
	Targets        []BackupTarget `toml:"targets"`
}

// BackupTarget is one thing backed up: a PostgreSQL cluster's databases,
// Consul's state or Nomad's state.
type BackupTarget struct {
	Name           string   `toml:"name"`
	Kind           string   `toml:"kind"`            // postgres, consul, nomad
	Schedule       string   `toml:"schedule"`        // cron spec; "" only on demand
	VerifySchedule string   `toml:"verify_schedule"` // cron spec; "" only on demand
	MaxAge         Duration `toml:"max_age"`         // stale without a good backup this long; 0: from the schedule
	KeepLast       int      `toml:"keep_last"`
	KeepDaily      int      `toml:"keep_daily"`
	KeepWeekly     int      `toml:"keep_weekly"`
	KeepMonthly    int      `toml:"keep_monthly"`

	// postgres targets
	Databases  []string `toml:"databases"`    // names, or ["*"] for every database and the roles
	PgDumpPath string   `toml:"pg_dump_path"` // pg_dump; pg_dumpall and pg_restore are looked up beside it
	Postgres   PGServer `toml:"postgres"`     // the server dumped, through the Stolon proxy
	Verify     PGServer `toml:"verify"`       // the scratch server restores are verified on; empty: checksums only

	// consul and nomad targets: saving a snapshot needs a management
	// token, which the watchers should not hold.
	TokenFile string `toml:"token_file"`
	Token     Secret `toml:"-"`
}

// PGServer is how Vigie reaches a PostgreSQL server.
type PGServer struct {
	Host         string `toml:"host"`
	Port         int    `toml:"port"`
	User         string `toml:"user"`
	PasswordFile string `toml:"password_file"`
	SSLMode      string `toml:"sslmode"` // libpq's: disable, allow, prefer, require, verify-ca, verify-full
	CAFile       string `toml:"ca_file"` // for verify-ca and verify-full
	Password     Secret `toml:"-"`
}

// S3 is the object store backups go to (Garage).
type S3 struct {
	Endpoint            string `toml:"endpoint"` // http(s)://host:port
	Region              string `toml:"region"`
	Bucket              string `toml:"bucket"`
	Prefix              string `toml:"prefix"` // key prefix of everything Vigie writes
	AccessKeyIDFile     string `toml:"access_key_id_file"`
	SecretAccessKeyFile string `toml:"secret_access_key_file"`
	TLS                 TLS    `toml:"tls"`
	AccessKeyID         Secret `toml:"-"`
	SecretAccessKey     Secret `toml:"-"`
}

// Garage is Garage's admin API, for the bucket's figures and the cluster's
// health in the backup report.
type Garage struct {
	AdminEndpoint  string `toml:"admin_endpoint"` // http(s)://host:3903; "" for none
	AdminTokenFile string `toml:"admin_token_file"`
	AdminToken     Secret `toml:"-"`
}

// Backup target kinds.
const (
	BackupPostgres = "postgres"
	BackupConsul   = "consul"
	BackupNomad    = "nomad"
)

var (
	backupKinds = []string{BackupPostgres, BackupConsul, BackupNomad}
	sslModes    = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
	// Target names are parts of object keys and of commands.
	targetName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
)

// CronParser parses schedules as Vigie runs them: 5 fields or a
// descriptor (@daily, @every 6h), with an optional CRON_TZ= zone.
var CronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// backupDefaults fill what an entry of [[backups.targets]] leaves out; the
// file decides only for the keys it sets, so an explicit 0 stays 0.
func (c *Config) backupDefaults() {
	for i := range c.Backups.Targets {
		t := &c.Backups.Targets[i]
		key := func(k string) string { return fmt.Sprintf("backups.targets[%d].%s", i, k) }
		for k, v := range map[string]*int{"keep_last": &t.KeepLast, "keep_daily": &t.KeepDaily, "keep_weekly": &t.KeepWeekly, "keep_monthly": &t.KeepMonthly} {
			if !c.inFile(key(k)) {
				*v = map[string]int{"keep_last": 3, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6}[k]
			}
		}
		if t.PgDumpPath == "" {
			t.PgDumpPath = "pg_dump"
		}
		if !c.inFile(key("max_age")) {
			t.MaxAge = Duration{defaultMaxAge(t.Schedule)}
		}
		t.Postgres.defaults()
		t.Verify.defaults()
	}
}

// defaults fill the port and sslmode a server's table leaves out.
func (s *PGServer) defaults() {
	if s.Port == 0 {
		s.Port = 5432
	}
	if s.SSLMode == "" {
		s.SSLMode = "prefer"
	}
}

// defaultMaxAge is 1.5 times the longest gap between two runs of a
// schedule (a weekday schedule's is Friday to Monday), so one missed run
// is not yet stale and two are; 0 without a schedule.
func defaultMaxAge(spec string) time.Duration {
	s, err := CronParser.Parse(spec)
	if spec == "" || err != nil {
		return 0
	}
	// A fixed reference keeps the default the same whenever it is read.
	t := s.Next(time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC))
	var gap time.Duration
	for range 40 {
		next := s.Next(t)
		if next.IsZero() {
			break
		}
		gap = max(gap, next.Sub(t))
		t = next
	}
	return gap * 3 / 2
}

// validateBackups checks [backups], [s3] and [garage].
func (c *Config) validateBackups(d *decoder) {
	b := &c.Backups
	if b.PartSizeMiB < 5 || b.PartSizeMiB > 5120 {
		d.add("backups.part_size_mib", "must be between 5 and 5120 (S3 parts are 5 MiB to 5 GiB), got %d", b.PartSizeMiB)
	}
	if b.ParallelParts < 1 || b.ParallelParts > 16 {
		d.add("backups.parallel_parts", "must be between 1 and 16, got %d", b.ParallelParts)
	}
	if b.Timeout.Duration <= 0 {
		d.add("backups.timeout", "must be greater than 0")
	}
	if b.ReportSchedule != "" {
		checkSchedule(d, "backups.report_schedule", b.ReportSchedule)
		if b.ReportRoom == "" {
			d.add("backups.report_schedule", "needs backups.report_room, the room the report is posted to")
		}
	}
	if b.ReportRoom != "" && !strings.HasPrefix(b.ReportRoom, "!") {
		d.add("backups.report_room", `must be a room ID such as "!abc:example.org" (room settings, Advanced), got %q`, b.ReportRoom)
	}
	seen := map[string]int{}
	for i := range b.Targets {
		c.validateTarget(d, i, seen)
	}
	if len(b.Targets) > 0 {
		c.validateS3(d)
	}
	if g := c.Garage; g.AdminEndpoint != "" {
		c.checkURL(d, "garage.admin_endpoint", g.AdminEndpoint, "http://127.0.0.1:3903")
	}
}

func (c *Config) validateTarget(d *decoder, i int, seen map[string]int) {
	t := &c.Backups.Targets[i]
	key := func(k string) string { return fmt.Sprintf("backups.targets[%d].%s", i, k) }
	switch {
	case t.Name == "":
		d.add(key("name"), "must be set: it names the target in commands, reports and object keys")
	case t.Name == "report":
		d.add(key("name"), `"report" is taken by the "backup report" command`)
	case !targetName.MatchString(t.Name):
		d.add(key("name"), "must be lowercase letters, digits, '-' or '_' (it is part of object keys), got %q", t.Name)
	default:
		if j, dup := seen[t.Name]; dup {
			d.add(key("name"), "%q is already the name of backups.targets[%d]", t.Name, j)
		}
		seen[t.Name] = i
	}
	if !slices.Contains(backupKinds, t.Kind) {
		c.oneOf(d, key("kind"), t.Kind, backupKinds)
	}
	if t.Schedule != "" {
		checkSchedule(d, key("schedule"), t.Schedule)
	}
	if t.VerifySchedule != "" {
		checkSchedule(d, key("verify_schedule"), t.VerifySchedule)
	}
	for k, v := range map[string]int{"keep_last": t.KeepLast, "keep_daily": t.KeepDaily, "keep_weekly": t.KeepWeekly, "keep_monthly": t.KeepMonthly} {
		if v < 0 {
			d.add(key(k), "must not be negative, got %d", v)
		}
	}
	if t.KeepLast+t.KeepDaily+t.KeepWeekly+t.KeepMonthly == 0 {
		d.add(key("keep_last"), "keeps nothing: with keep_last, keep_daily, keep_weekly and keep_monthly all 0 (the newest good backup is always kept, but nothing else)")
	}
	if t.Kind == BackupPostgres && c.inFile(key("token_file")) {
		d.add(key("token_file"), "only applies to consul and nomad targets (postgres ones use postgres.password_file)")
	}
	if t.Kind != BackupPostgres {
		for _, k := range []string{"databases", "pg_dump_path", "postgres", "verify"} {
			if c.inFile(key(k)) {
				d.add(key(k), "only applies to postgres targets, this one is %s", t.Kind)
			}
		}
		return
	}
	switch {
	case len(t.Databases) == 0:
		d.add(key("databases"), `must list the databases to dump, or be ["*"] for every database and the roles`)
	case slices.Contains(t.Databases, "*") && len(t.Databases) > 1:
		d.add(key("databases"), `"*" already means every database: list names, or only "*"`)
	}
	c.validatePGServer(d, key("postgres"), t.Postgres, true, "for the server dumped, the Stolon proxy")
	if t.Verify.Host != "" || c.inFile(key("verify")) {
		c.validatePGServer(d, key("verify"), t.Verify, true, "the scratch server restores are verified on")
	}
}

// validatePGServer checks a server's table; hostHint says in the error
// which server host should name.
func (c *Config) validatePGServer(d *decoder, key string, s PGServer, required bool, hostHint string) {
	if s.Host == "" && required {
		d.add(key+".host", "must be set (%s)", hostHint)
	}
	if s.User == "" && required {
		d.add(key+".user", "must be set")
	}
	if s.Port < 1 || s.Port > 65535 {
		d.add(key+".port", "must be a TCP port, got %d", s.Port)
	}
	c.oneOf(d, key+".sslmode", s.SSLMode, sslModes)
	if s.CAFile != "" && !strings.HasPrefix(s.SSLMode, "verify-") {
		d.add(key+".ca_file", "is only used with sslmode verify-ca or verify-full, not %q", s.SSLMode)
	}
}

func (c *Config) validateS3(d *decoder) {
	s := &c.S3
	if s.Endpoint == "" {
		d.add("s3.endpoint", "must be set when backups are configured (Garage's S3 API, e.g. https://garage.example.org:3900)")
	} else {
		c.checkURL(d, "s3.endpoint", s.Endpoint, "https://garage.example.org:3900")
	}
	if s.Bucket == "" {
		d.add("s3.bucket", "must be set when backups are configured")
	}
	if s.Region == "" {
		d.add("s3.region", `must not be empty (Garage's default is "garage")`)
	}
	if strings.HasPrefix(s.Prefix, "/") || strings.HasSuffix(s.Prefix, "/") {
		d.add("s3.prefix", "must not start or end with '/', got %q", s.Prefix)
	}
}

// checkSchedule parses a cron spec as the scheduler will.
func checkSchedule(d *decoder, key, spec string) {
	if _, err := CronParser.Parse(spec); err != nil {
		d.add(key, `invalid schedule %q: %v (5 fields "minute hour day month weekday" such as "30 3 * * *", or @daily, @every 6h; CRON_TZ=Europe/Paris may come first)`, spec, err)
	}
}

// NextRuns returns the next n times a schedule fires after from.
func NextRuns(spec string, from time.Time, n int) ([]time.Time, error) {
	s, err := CronParser.Parse(spec)
	if err != nil {
		return nil, err
	}
	out := make([]time.Time, 0, n)
	for t := from; len(out) < n; {
		t = s.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out, nil
}

// envName is the environment variable part of a target's name:
// VIGIE_BACKUP_<NAME>_PASSWORD for target "main-db" is
// VIGIE_BACKUP_MAIN_DB_PASSWORD.
func envName(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= '0' && r <= '9', r >= 'A' && r <= 'Z':
			return r
		}
		return '_'
	}, name)
}

// resolveBackupSecrets reads each target's passwords, from password_file
// or VIGIE_BACKUP_<NAME>_PASSWORD / _VERIFY_PASSWORD.
func (c *Config) resolveBackupSecrets(getenv func(string) string, d *decoder) {
	for i := range c.Backups.Targets {
		t := &c.Backups.Targets[i]
		if t.Kind != BackupPostgres {
			c.resolveSecret(getenv, d, fmt.Sprintf("backups.targets[%d].token_file", i), "VIGIE_BACKUP_"+envName(t.Name)+"_TOKEN", t.TokenFile, &t.Token)
			continue
		}
		for _, s := range []struct {
			key, env string
			srv      *PGServer
		}{
			{fmt.Sprintf("backups.targets[%d].postgres.password_file", i), "VIGIE_BACKUP_" + envName(t.Name) + "_PASSWORD", &t.Postgres},
			{fmt.Sprintf("backups.targets[%d].verify.password_file", i), "VIGIE_BACKUP_" + envName(t.Name) + "_VERIFY_PASSWORD", &t.Verify},
		} {
			c.resolveSecret(getenv, d, s.key, s.env, s.srv.PasswordFile, &s.srv.Password)
		}
	}
}

// resolveSecret fills dst from file if set, else from env.
func (c *Config) resolveSecret(getenv func(string) string, d *decoder, fileKey, env, file string, dst *Secret) {
	if file != "" {
		v, err := readSecret(file)
		if err != nil {
			d.add(fileKey, "%v", err)
			return
		}
		*dst = Secret{value: v, Source: "file " + file}
		return
	}
	if v := getenv(env); v != "" {
		*dst = Secret{value: v, Source: "env " + env}
	}
}
