package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const stolonTOML = `[consul]
token_file = "consul-token"

[[stolon.clusters]]
name = "main-db"
[stolon.clusters.postgres]
host = "stolon-proxy.service.consul"
user = "stolon"
password_file = "secrets/pg"

[[stolon.clusters]]
name = "Reports.v2"
store_prefix = "/stolon/other"
token_file = "stolon-token"
database = "reports"
max_lag = 1048576
grace = "2m"
catch_up_timeout = "45s"
failover_timeout = "90s"
rejoin_timeout = "20m"
[stolon.clusters.postgres]
host = "10.0.0.5"
port = 25432
user = "su"
sslmode = "verify-full"
ca_file = "ca.pem"
`

func TestStolonSettings(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/consul-token", "consul-secret\n")
	writeFile(t, dir+"/secrets/pg", "pg-secret\n")
	writeFile(t, dir+"/stolon-token", "stolon-secret\n")
	c, err := load(writeConfig(t, dir, stolonTOML), env("VIGIE_STOLON_REPORTS_V2_PASSWORD", "su-secret", "VIGIE_STOLON_MAIN_DB_TOKEN", ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Stolon.Clusters) != 2 {
		t.Fatalf("clusters: %+v", c.Stolon.Clusters)
	}
	main, reports := c.Stolon.Clusters[0], c.Stolon.Clusters[1]

	// Defaults: stolon's store prefix, the postgres database, libpq's port
	// and sslmode, the spec's maxStandbyLag, and the timeouts.
	if main.StorePrefix != "stolon/cluster" || main.KeyPrefix() != "stolon/cluster/main-db/" || main.Database != "postgres" {
		t.Errorf("defaults: %+v", main)
	}
	if main.Postgres.Port != 5432 || main.Postgres.SSLMode != "prefer" || main.MaxLag != 0 {
		t.Errorf("postgres defaults: %+v, max_lag %d", main.Postgres, main.MaxLag)
	}
	if main.Grace.Duration != time.Minute || main.CatchUpTimeout.Duration != 30*time.Second ||
		main.FailoverTimeout.Duration != time.Minute || main.RejoinTimeout.Duration != 10*time.Minute {
		t.Errorf("duration defaults: %s %s %s %s", main.Grace, main.CatchUpTimeout, main.FailoverTimeout, main.RejoinTimeout)
	}

	// What the file sets, with one leading "/" dropped from store_prefix.
	if reports.StorePrefix != "stolon/other" || reports.KeyPrefix() != "stolon/other/Reports.v2/" || reports.Database != "reports" {
		t.Errorf("set: %+v", reports)
	}
	if reports.MaxLag != 1<<20 || reports.Grace.Duration != 2*time.Minute || reports.CatchUpTimeout.Duration != 45*time.Second ||
		reports.FailoverTimeout.Duration != 90*time.Second || reports.RejoinTimeout.Duration != 20*time.Minute {
		t.Errorf("set: %+v", reports)
	}
	if p := reports.Postgres; p.Host != "10.0.0.5" || p.Port != 25432 || p.User != "su" || p.SSLMode != "verify-full" || p.CAFile != filepath.Join(dir, "ca.pem") {
		t.Errorf("postgres: %+v", p)
	}

	// Secrets: files relative to the config's directory, or the
	// environment; without its own token, a cluster uses consul's.
	if main.Postgres.Password.Reveal() != "pg-secret" || main.Postgres.Password.Source != "file "+filepath.Join(dir, "secrets", "pg") {
		t.Errorf("main password from %q", main.Postgres.Password.Source)
	}
	if reports.Postgres.Password.Reveal() != "su-secret" || reports.Postgres.Password.Source != "env VIGIE_STOLON_REPORTS_V2_PASSWORD" {
		t.Errorf("reports password from %q", reports.Postgres.Password.Source)
	}
	if main.Token.IsSet() || c.StolonToken(main).Reveal() != "consul-secret" {
		t.Errorf("main token: own %v, used from %q", main.Token.IsSet(), c.StolonToken(main).Source)
	}
	if reports.Token.Reveal() != "stolon-secret" || c.StolonToken(reports).Source != "file "+filepath.Join(dir, "stolon-token") {
		t.Errorf("reports token from %q", reports.Token.Source)
	}

	// The environment gives the token when token_file is not set.
	c, err = load(writeConfig(t, dir, stolonTOML), env("VIGIE_STOLON_MAIN_DB_TOKEN", "env-token"))
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.StolonToken(c.Stolon.Clusters[0]); tok.Reveal() != "env-token" || tok.Source != "env VIGIE_STOLON_MAIN_DB_TOKEN" {
		t.Errorf("token from %q", tok.Source)
	}
}

func TestStolonSecretsNeverPrinted(t *testing.T) {
	const secret = "hunter2-stolon-secret"
	dir := t.TempDir()
	writeFile(t, dir+"/consul-token", secret)
	writeFile(t, dir+"/secrets/pg", secret)
	writeFile(t, dir+"/stolon-token", secret)
	c, err := load(writeConfig(t, dir, stolonTOML), env("VIGIE_STOLON_REPORTS_V2_PASSWORD", secret))
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	summary := c.Summary()
	for name, out := range map[string]string{
		"Summary": summary,
		"fmt":     fmt.Sprintf("%v %+v %#v", c.Stolon, c.Stolon, c.Stolon),
		"json":    string(js),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("%s leaks the secret:\n%s", name, out)
		}
	}
	for _, want := range []string{
		"stolon main-db    keys stolon/cluster/main-db/, token consul's",
		"  postgres        stolon-proxy.service.consul:5432, database postgres, user stolon, sslmode prefer, password from file " + filepath.Join(dir, "secrets", "pg"),
		"  alerts          lag beyond the cluster's maxStandbyLag or a proxy not following, for 1m",
		"  failover        catch up within 30s, new master within 1m, old one back within 10m",
		"stolon Reports.v2 keys stolon/other/Reports.v2/, token from file " + filepath.Join(dir, "stolon-token"),
		"password from env VIGIE_STOLON_REPORTS_V2_PASSWORD",
		"lag beyond 1 MiB or a proxy not following, for 2m",
	} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	if !strings.Contains(string(js), `"MaxLag":"1 MiB"`) {
		t.Errorf("json: max_lag is not written as a size: %s", js)
	}
}

func TestStolonProblems(t *testing.T) {
	const server = "[stolon.clusters.postgres]\nhost = \"proxy\"\nuser = \"stolon\"\n"
	type want struct {
		line int
		key  string
		msg  string // substring
	}
	tests := []struct {
		name string
		toml string
		want []want
	}{
		{"entry without name nor server", "[[stolon.clusters]]\ndatabase = \"app\"\n", []want{
			{1, "stolon.clusters[0].name", "must be set: stolon's --cluster-name"},
			{1, "stolon.clusters[0].postgres.host", "must be set (a stolon-proxy of the cluster)"},
			{1, "stolon.clusters[0].postgres.user", "must be set"},
		}},
		{"server without host", "[[stolon.clusters]]\nname = \"a\"\n[stolon.clusters.postgres]\nuser = \"stolon\"\n", []want{
			{3, "stolon.clusters[0].postgres.host", "must be set (a stolon-proxy of the cluster)"},
		}},
		{"bad names", "[[stolon.clusters]]\nname = \"main db\"\n" + server +
			"[[stolon.clusters]]\nname = \"..\"\n" + server +
			"[[stolon.clusters]]\nname = \"x/y\"\n" + server, []want{
			{2, "stolon.clusters[0].name", `must be letters, digits, '.', '-' or '_' (it is a Consul key segment), got "main db"`},
			{7, "stolon.clusters[1].name", `got ".."`},
			{12, "stolon.clusters[2].name", `got "x/y"`},
		}},
		{"duplicate name", "[[stolon.clusters]]\nname = \"a\"\n" + server + "[[stolon.clusters]]\nname = \"a\"\n" + server, []want{
			{7, "stolon.clusters[1].name", `"a" is already the name of stolon.clusters[0]`},
		}},
		{"store prefixes", "[[stolon.clusters]]\nname = \"a\"\nstore_prefix = \"\"\n" + server +
			"[[stolon.clusters]]\nname = \"b\"\nstore_prefix = \"stolon//cluster\"\n" + server +
			"[[stolon.clusters]]\nname = \"c\"\nstore_prefix = \"stolon/../cluster\"\n" + server +
			"[[stolon.clusters]]\nname = \"d\"\nstore_prefix = \"stolon/cluster/\"\n" + server +
			"[[stolon.clusters]]\nname = \"e\"\nstore_prefix = \"stolon/cluster \"\n" + server +
			"[[stolon.clusters]]\nname = \"f\"\nstore_prefix = \"//stolon\"\n" + server, []want{
			{3, "stolon.clusters[0].store_prefix", `must not be empty, got "" (stolon's --store-prefix, by default "stolon/cluster")`},
			{9, "stolon.clusters[1].store_prefix", `must not have empty segments (a doubled, leading or trailing '/'), got "stolon//cluster"`},
			{15, "stolon.clusters[2].store_prefix", `must not have "." or ".." segments`},
			{21, "stolon.clusters[3].store_prefix", "must not have empty segments"},
			{27, "stolon.clusters[4].store_prefix", "must not have spaces around a segment"},
			{33, "stolon.clusters[5].store_prefix", `must not have empty segments (a doubled, leading or trailing '/'), got "/stolon"`},
		}},
		{"empty database", "[[stolon.clusters]]\nname = \"a\"\ndatabase = \"\"\n" + server, []want{
			{3, "stolon.clusters[0].database", "must not be empty"},
		}},
		{"zero and bare durations", "[[stolon.clusters]]\nname = \"a\"\ngrace = \"0s\"\ncatch_up_timeout = \"0s\"\nfailover_timeout = \"0s\"\nrejoin_timeout = 600\n" + server, []want{
			{3, "stolon.clusters[0].grace", "must be greater than 0"},
			{4, "stolon.clusters[0].catch_up_timeout", "must be greater than 0"},
			{5, "stolon.clusters[0].failover_timeout", "must be greater than 0"},
			{6, "stolon.clusters[0].rejoin_timeout", `bare number 600 (write "600s"`},
		}},
		{"negative size", "[[stolon.clusters]]\nname = \"a\"\nmax_lag = -1\n" + server, []want{
			{3, "stolon.clusters[0].max_lag", "must not be negative, got -1"},
		}},
		{"bad size string", "[[stolon.clusters]]\nname = \"a\"\nmax_lag = \"1.5GiB\"\n" + server, []want{
			{3, "stolon.clusters[0].max_lag", `invalid size "1.5GiB": write a number of bytes, or a whole number with a unit such as "512KiB"`},
		}},
		{"float size", "[[stolon.clusters]]\nname = \"a\"\nmax_lag = 1.5e6\n" + server, []want{
			{3, "stolon.clusters[0].max_lag", "must be a number of bytes, or a whole number with a unit such as \"512KiB\", \"16MiB\", \"1GiB\" (powers of 1024) or \"500kB\", \"10MB\" (powers of 1000); got a float"},
		}},
		{"bad server", "[[stolon.clusters]]\nname = \"a\"\n" + server + "port = 70000\nsslmode = \"sometimes\"\nca_file = \"ca.pem\"\n", []want{
			{6, "stolon.clusters[0].postgres.port", "must be a TCP port, got 70000"},
			{7, "stolon.clusters[0].postgres.sslmode", "must be one of disable, allow, prefer, require, verify-ca, verify-full"},
			{8, "stolon.clusters[0].postgres.ca_file", `is only used with sslmode verify-ca or verify-full, not "sometimes"`},
		}},
		{"no consul", "[consul]\naddress = \"\"\n\n[[stolon.clusters]]\nname = \"a\"\n" + server, []want{
			{2, "consul.address", "must be an http(s) URL"},
			{4, "stolon.clusters", "needs consul.address: Vigie reads and writes the Stolon clusters' keys through the [consul] connection"},
		}},
		{"unreadable secret files", "[[stolon.clusters]]\nname = \"a\"\ntoken_file = \"nope\"\n" + server + "password_file = \"nope-either\"\n", []want{
			{3, "stolon.clusters[0].token_file", "cannot read secret file"},
			{7, "stolon.clusters[0].postgres.password_file", "cannot read secret file"},
		}},
		{"misspelt and inline keys", "[[stolon.clusters]]\nname = \"a\"\nmax_lga = \"1MiB\"\ntoken = \"x\"\n" + server + "password = \"x\"\n", []want{
			{3, "stolon.clusters[0].max_lga", `unknown key (did you mean "stolon.clusters[0].max_lag"?)`},
			{4, "stolon.clusters[0].token", "secrets are not accepted inline"},
			{8, "stolon.clusters[0].postgres.password", "secrets are not accepted inline"},
		}},
		// Keys of inline entries have lines too, and an explicit "0s" there
		// is not taken for a key left out.
		{"inline entries", "stolon = { clusters = [\n  { name = \"a\", grace = \"0s\", postgres = { host = \"h\", user = \"u\" } },\n  { name = \"b b\", postgres = { host = \"h\", user = \"u\" } },\n] }\n", []want{
			{2, "stolon.clusters[0].grace", "must be greater than 0"},
			{3, "stolon.clusters[1].name", `got "b b"`},
		}},
		{"not an array of tables", "[stolon]\nclusters = \"main\"\n", []want{
			{2, "stolon.clusters", "must be an array of tables ([[stolon.clusters]] sections), got a string"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, t.TempDir(), tt.toml)
			_, err := load(path, env())
			ps := problems(t, err)
			if len(ps) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(tt.want), err)
			}
			for i, w := range tt.want {
				prefix := fmt.Sprintf("%s:%d: %s: ", path, w.line, w.key)
				if got := ps[i].String(); !strings.HasPrefix(got, prefix) || !strings.Contains(got, w.msg) {
					t.Errorf("problem %d = %q\nwant %q with %q", i, got, prefix, w.msg)
				}
			}
		})
	}
}

func TestSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Size
		out  string
	}{
		{"0", 0, "0 B"},
		{"123B", 123, "123 B"},
		{"123", 123, "123 B"},
		{"500kB", 500_000, "500 kB"},
		{"500KB", 500_000, "500 kB"},
		{"512KiB", 512 << 10, "512 KiB"},
		{"512kib", 512 << 10, "512 KiB"},
		{"16MiB", 16 << 20, "16 MiB"},
		{"16 MiB", 16 << 20, "16 MiB"},
		{" 16mib ", 16 << 20, "16 MiB"},
		{"10MB", 10_000_000, "10 MB"},
		{"1GiB", 1 << 30, "1 GiB"},
		{"1gb", 1e9, "1 GB"},
		{"2TiB", 2 << 40, "2 TiB"},
		{"1TB", 1e12, "1 TB"},
		{"1024KiB", 1 << 20, "1 MiB"},
		{"1204KiB", 1024 * 1204, "1204 KiB"}, // stolon's default maxStandbyLag
		{"1000KiB", 1_024_000, "1000 KiB"},
		{"1500", 1500, "1500 B"},
		{"2000B", 2000, "2 kB"},
		{"8388607TiB", 8388607 << 40, "8388607 TiB"},
	} {
		var s Size
		if err := s.UnmarshalText([]byte(tt.in)); err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if s != tt.want || s.String() != tt.out {
			t.Errorf("%q = %d %q, want %d %q", tt.in, s, s.String(), tt.want, tt.out)
		}
		// What String writes reads back the same.
		var back Size
		if b, _ := s.MarshalText(); back.UnmarshalText(b) != nil || back != s {
			t.Errorf("%q does not read back: %q → %d", tt.in, b, back)
		}
	}
	for in, want := range map[string]string{
		"":                      `invalid size ""`,
		"MiB":                   `invalid size "MiB"`,
		"16 potatoes":           `invalid size "16 potatoes": write a number of bytes, or a whole number with a unit such as "512KiB", "16MiB", "1GiB" (powers of 1024) or "500kB", "10MB" (powers of 1000)`,
		"16M":                   `invalid size "16M"`,
		"1.5GiB":                `invalid size "1.5GiB"`,
		"1e6":                   `invalid size "1e6"`,
		"+5MiB":                 `invalid size "+5MiB"`,
		"16MiB16":               `invalid size "16MiB16"`,
		"-1":                    `must not be negative, got "-1"`,
		"-16MiB":                `must not be negative, got "-16MiB"`,
		"8388608TiB":            `size "8388608TiB" is too large`,
		"99999999999999999999B": `size "99999999999999999999B" is too large`,
	} {
		var s Size
		if err := s.UnmarshalText([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
	// From TOML: an integer is bytes, a string has a unit.
	dir := t.TempDir()
	for doc, want := range map[string]Size{
		"max_lag = 1048576":  1 << 20,
		"max_lag = \"1MiB\"": 1 << 20,
		"max_lag = 0":        0,
		"max_lag = \"10MB\"": 10_000_000,
	} {
		c, err := load(writeConfig(t, dir, "[[stolon.clusters]]\nname = \"a\"\n"+doc+"\n[stolon.clusters.postgres]\nhost = \"h\"\nuser = \"u\"\n"), env())
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if got := c.Stolon.Clusters[0].MaxLag; got != want {
			t.Errorf("%s: %d, want %d", doc, got, want)
		}
	}
}

// The [[stolon.clusters]] example of config.example.toml, uncommented,
// loads and validates as part of the example.
func TestStolonExampleSection(t *testing.T) {
	data, err := os.ReadFile("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	start := -1
	for i, l := range lines {
		if l == "# [[stolon.clusters]]" {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatal("config.example.toml has no commented-out [[stolon.clusters]] example")
	}
	end := start
	for end < len(lines) && strings.HasPrefix(lines[end], "#") {
		l, ok := strings.CutPrefix(lines[end], "# ")
		if !ok {
			l = strings.TrimPrefix(lines[end], "#")
		}
		lines[end] = l
		end++
	}
	dir := t.TempDir()
	section := strings.Join(lines[start:end], "\n")
	if !strings.Contains(section, "[stolon.clusters.postgres]") || !strings.Contains(section, "/run/secrets/") {
		t.Fatalf("unexpected example section:\n%s", section)
	}
	lines[start] = strings.ReplaceAll(section, "/run/secrets/", dir+"/")
	doc := strings.Join(append(lines[:start+1], lines[end:]...), "\n")
	writeFile(t, dir+"/vigie-stolon-token", "stolon-token")
	writeFile(t, dir+"/vigie-stolon-pg", "pg-password")
	c, err := load(writeConfig(t, dir, doc), env("VIGIE_LDAP_BIND_PASSWORD", "pw"))
	if err != nil {
		t.Fatalf("the example with [[stolon.clusters]] uncommented:\n%v\n%s", err, section)
	}
	if len(c.Stolon.Clusters) != 1 {
		t.Fatalf("clusters: %+v", c.Stolon.Clusters)
	}
	s := c.Stolon.Clusters[0]
	if s.Name != "main-db" || s.KeyPrefix() != "stolon/cluster/main-db/" || s.MaxLag != 16<<20 ||
		s.Postgres.Host == "" || s.Postgres.Password.Reveal() != "pg-password" || s.Token.Reveal() != "stolon-token" {
		t.Errorf("example cluster: %+v", s)
	}
	// The example's values are the defaults, but for max_lag.
	def := Default()
	def.lines = map[string]int{}
	def.Stolon.Clusters = []StolonCluster{{Name: s.Name, Postgres: PGServer{Host: s.Postgres.Host, User: s.Postgres.User}}}
	def.stolonDefaults()
	want := def.Stolon.Clusters[0]
	want.TokenFile, want.Token, want.MaxLag = s.TokenFile, s.Token, s.MaxLag
	want.Postgres.PasswordFile, want.Postgres.Password = s.Postgres.PasswordFile, s.Postgres.Password
	if fmt.Sprintf("%#v", want) != fmt.Sprintf("%#v", s) {
		t.Errorf("example differs from the defaults:\n%#v\n%#v", s, want)
	}
}
