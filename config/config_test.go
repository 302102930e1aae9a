package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/testpki"
)

// env returns a getenv over the given pairs, so tests never see the real
// environment.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// writeConfig writes content to dir/config.toml and returns its path.
func writeConfig(t *testing.T, dir, content string) string {
	t.Helper()
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// problems returns the problems of a *Errors, failing on any other outcome.
func problems(t *testing.T, err error) []Problem {
	t.Helper()
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want *Errors, got %T: %v", err, err)
	}
	return errs.Problems
}

func TestDefaultsWithoutFile(t *testing.T) {
	c, err := load("", env())
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"data_dir", c.DataDir, "./vigie-data"},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "console"},
		{"http.listen", c.HTTP.Listen, "127.0.0.1:9464"},
		{"matrix.command_prefix", c.Matrix.CommandPrefix, "!vigie"},
		{"matrix.device_name", c.Matrix.DeviceName, "Vigie"},
		{"matrix.encryption", c.Matrix.Encryption, true},
		{"matrix.event_grace", c.Matrix.EventGrace.Duration, 10 * time.Second},
		{"commands.timeout", c.Commands.Timeout.Duration, 60 * time.Second},
		{"commands.max_reply_bytes", c.Commands.MaxReplyBytes, 16000},
		{"outbox.min_backoff", c.Outbox.MinBackoff.Duration, time.Second},
		{"outbox.max_backoff", c.Outbox.MaxBackoff.Duration, 5 * time.Minute},
		{"outbox.give_up_after", c.Outbox.GiveUpAfter.Duration, 24 * time.Hour},
		{"nomad.address", c.Nomad.Address, "http://127.0.0.1:4646"},
		{"consul.address", c.Consul.Address, "http://127.0.0.1:8500"},
		{"console.sender", c.Console.Sender, "@console:localhost"},
		{"file", c.File, ""},
		{"Default matches", c.Outbox, want.Outbox},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if c.Matrix.AccessToken.IsSet() || c.Nomad.Token.IsSet() {
		t.Error("secrets set without file or environment")
	}
}

func TestFullValidFile(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{
		"token": "tok\n", "pickle": "pk", "nomad": "nt", "consul": "ct",
	} {
		writeFile(t, filepath.Join(dir, "secrets", name), v)
	}
	path := writeConfig(t, dir, `
data_dir = "/var/lib/vigie"

[log]
level = "debug"
format = "json"

[http]
listen = ""

[matrix]
homeserver = "https://matrix.example.org"
user_id = "@vigie:example.org"
access_token_file = "secrets/token"
pickle_key_file = "secrets/pickle"
device_name = "Vigie prod"
command_prefix = "!ops"
allowed_inviters = ["@alice:example.org", ":example.org", "@bob:[::1]:8448"]
encryption = true
event_grace = "1m"

[commands]
timeout = "2m30s"
max_reply_bytes = 4096

[outbox]
min_backoff = "2s"
max_backoff = "10m"
give_up_after = "1h"

[console]
sender = "@alice:example.org"

[nomad]
address = "https://nomad.example.org:4646"
region = "eu"
namespace = "ops"
token_file = "secrets/nomad"

[consul]
address = "https://consul.example.org:8501"
datacenter = "dc1"
token_file = "secrets/consul"
`)
	c, err := load(path, env("NOMAD_ADDR", "http://ignored:4646", "VIGIE_MATRIX_ACCESS_TOKEN", "ignored"))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"data_dir", c.DataDir, "/var/lib/vigie"},
		{"log.level", c.Log.Level, "debug"},
		{"log.format", c.Log.Format, "json"},
		{"http.listen", c.HTTP.Listen, ""},
		{"matrix.homeserver", c.Matrix.Homeserver, "https://matrix.example.org"},
		{"matrix.user_id", c.Matrix.UserID, "@vigie:example.org"},
		{"matrix.access_token", c.Matrix.AccessToken.Reveal(), "tok"},
		{"matrix.access_token source", c.Matrix.AccessToken.Source, "file " + filepath.Join(dir, "secrets", "token")},
		{"matrix.pickle_key", c.Matrix.PickleKey.Reveal(), "pk"},
		{"matrix.password", c.Matrix.Password.IsSet(), false},
		{"matrix.device_name", c.Matrix.DeviceName, "Vigie prod"},
		{"matrix.command_prefix", c.Matrix.CommandPrefix, "!ops"},
		{"matrix.allowed_inviters", strings.Join(c.Matrix.AllowedInviters, " "), "@alice:example.org :example.org @bob:[::1]:8448"},
		{"matrix.encryption", c.Matrix.Encryption, true},
		{"matrix.event_grace", c.Matrix.EventGrace.Duration, time.Minute},
		{"commands.timeout", c.Commands.Timeout.Duration, 150 * time.Second},
		{"commands.max_reply_bytes", c.Commands.MaxReplyBytes, 4096},
		{"outbox.min_backoff", c.Outbox.MinBackoff.Duration, 2 * time.Second},
		{"outbox.max_backoff", c.Outbox.MaxBackoff.Duration, 10 * time.Minute},
		{"outbox.give_up_after", c.Outbox.GiveUpAfter.Duration, time.Hour},
		{"console.sender", c.Console.Sender, "@alice:example.org"},
		{"nomad.address", c.Nomad.Address, "https://nomad.example.org:4646"},
		{"nomad.region", c.Nomad.Region, "eu"},
		{"nomad.namespace", c.Nomad.Namespace, "ops"},
		{"nomad.token", c.Nomad.Token.Reveal(), "nt"},
		{"consul.address", c.Consul.Address, "https://consul.example.org:8501"},
		{"consul.datacenter", c.Consul.Datacenter, "dc1"},
		{"consul.token", c.Consul.Token.Reveal(), "ct"},
		{"file", c.File, path},
		{"line of matrix.user_id", c.Line("matrix.user_id"), 13},
		{"line of absent key", c.Line("matrix.password_file"), 0},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if ps := c.MatrixProblems(); len(ps) != 0 {
		t.Errorf("MatrixProblems = %v", ps)
	}
}

func TestProblems(t *testing.T) {
	type want struct {
		line int
		key  string
		msg  string // substring
	}
	tests := []struct {
		name string
		toml string
		env  []string
		want []want
	}{
		{"unknown top-level key", "\n\ndata_dri = \"x\"\n", nil,
			[]want{{3, "data_dri", `unknown key (did you mean "data_dir"?)`}}},
		{"unknown key in table", "[matrix]\nhomserver = \"https://m.org\"\n", nil,
			[]want{{2, "matrix.homserver", `unknown key (did you mean "matrix.homeserver"?)`}}},
		{"unknown key without suggestion", "[log]\nfrobnicate = 1\n", nil,
			[]want{{2, "log.frobnicate", "unknown key"}}},
		{"key under the wrong table", "[log]\nhomeserver = \"https://m.org\"\n", nil,
			[]want{{2, "log.homeserver", `did you mean "matrix.homeserver"?`}}},
		{"unknown top-level table", "[matirx]\nuser_id = \"@a:b\"\n", nil,
			[]want{{1, "matirx", `unknown table (did you mean "matrix"?)`}}},
		{"nested unknown table", "[matrix]\nuser_id = \"@a:b\"\n[matrix.extra]\nx = 1\n", nil,
			[]want{{3, "matrix.extra", "unknown table"}}},
		{"unknown key in dotted key", "matrix.homserver = \"https://m.org\"\n", nil,
			[]want{{1, "matrix.homserver", `did you mean "matrix.homeserver"?`}}},
		{"unknown key in inline table", "matrix = { user_id = \"@a:b\", homserver = \"https://m.org\" }\n", nil,
			[]want{{1, "matrix.homserver", `did you mean "matrix.homeserver"?`}}},
		{"quoted key", "\"data.dir\" = \"x\"\n", nil,
			[]want{{1, `"data.dir"`, "unknown key"}}},
		{"syntax error", "[log]\nlevel = \"info\"\nformat = \n", nil,
			[]want{{3, "", "invalid TOML"}}},
		{"duplicate key", "[log]\nlevel = \"info\"\nlevel = \"debug\"\n", nil,
			[]want{{3, "", "invalid TOML: key level is already defined"}}},
		{"bare number for duration", "[commands]\ntimeout = 5\n", nil,
			[]want{{2, "commands.timeout", `bare number 5 (write "5s"`}}},
		{"bool for duration", "[commands]\ntimeout = true\n", nil,
			[]want{{2, "commands.timeout", "must be a duration string"}}},
		{"bad duration", "[outbox]\nmax_backoff = \"5 minutes\"\n", nil,
			[]want{{2, "outbox.max_backoff", `invalid duration "5 minutes"`}}},
		{"negative duration", "[matrix]\nevent_grace = \"-1s\"\n", nil,
			[]want{{2, "matrix.event_grace", "must not be negative"}}},
		{"zero timeout", "[commands]\ntimeout = \"0s\"\n", nil,
			[]want{{2, "commands.timeout", "greater than 0"}}},
		{"string for int", "[commands]\nmax_reply_bytes = \"4k\"\n", nil,
			[]want{{2, "commands.max_reply_bytes", "must be an integer, got a string"}}},
		{"small max_reply_bytes", "[commands]\nmax_reply_bytes = 10\n", nil,
			[]want{{2, "commands.max_reply_bytes", "at least 1024"}}},
		{"string for bool", "[matrix]\nencryption = \"yes\"\n", nil,
			[]want{{2, "matrix.encryption", "must be true or false, got a string"}}},
		{"int for string", "data_dir = 3\n", nil,
			[]want{{1, "data_dir", "must be a string, got an integer"}}},
		{"empty data_dir", "data_dir = \"\"\n", nil,
			[]want{{1, "data_dir", "must not be empty"}}},
		{"string for table", "matrix = \"x\"\n", nil,
			[]want{{1, "matrix", "must be a table"}}},
		{"array of tables", "[[matrix]]\nuser_id = \"@a:b\"\n", nil,
			[]want{{1, "matrix", "must be a table ([matrix] section), got an array"}}},
		{"bad URL", "[matrix]\nhomeserver = \"ftp://x\"\n", nil,
			[]want{{2, "matrix.homeserver", `must be an http(s) URL such as "https://matrix.example.org", got "ftp://x"`}}},
		{"bad enum with suggestion", "[log]\nlevel = \"warning\"\n", nil,
			[]want{{2, "log.level", `must be one of trace, debug, info, warn, error; got "warning" (did you mean "warn"?)`}}},
		{"bad format", "[log]\nformat = \"xml\"\n", nil,
			[]want{{2, "log.format", "must be one of console, json"}}},
		{"bad listen", "[http]\nlisten = \"9464\"\n", nil,
			[]want{{2, "http.listen", "must be host:port"}}},
		{"bad user ID", "[matrix]\nuser_id = \"vigie@example.org\"\n", nil,
			[]want{{2, "matrix.user_id", `must start with "@"`}}},
		{"user ID without server", "[matrix]\nuser_id = \"@vigie\"\n", nil,
			[]want{{2, "matrix.user_id", `missing ":server"`}}},
		{"bad console sender", "[console]\nsender = \"@console:local host\"\n", nil,
			[]want{{2, "console.sender", "invalid character ' ' in server name"}}},
		{"bad inviter on its own line", "[matrix]\nallowed_inviters = [\n  \"@alice:example.org\",\n  \"alice\",\n  \":bad_server\",\n]\n", nil,
			[]want{
				{4, "matrix.allowed_inviters", `entry "alice"`},
				{5, "matrix.allowed_inviters", `entry ":bad_server"`},
			}},
		{"non-string inviter", "[matrix]\nallowed_inviters = [\"@a:b\", 3]\n", nil,
			[]want{{2, "matrix.allowed_inviters", "entry 2 must be a string, got an integer"}}},
		{"string for array", "[matrix]\nallowed_inviters = \"@a:b\"\n", nil,
			[]want{{2, "matrix.allowed_inviters", "must be an array of strings, got a string"}}},
		{"prefix with space", "[matrix]\ncommand_prefix = \"! vigie\"\n", nil,
			[]want{{2, "matrix.command_prefix", "must not contain spaces"}}},
		{"empty prefix", "[matrix]\ncommand_prefix = \"\"\n", nil,
			[]want{{2, "matrix.command_prefix", "must not be empty"}}},
		{"empty device name", "[matrix]\ndevice_name = \"\"\n", nil,
			[]want{{2, "matrix.device_name", "must not be empty"}}},
		{"min backoff above max", "[outbox]\nmin_backoff = \"10m\"\n", nil,
			[]want{{2, "outbox.min_backoff", "min_backoff (10m) must not exceed max_backoff (5m)"}}},
		{"max backoff below min", "[outbox]\nmax_backoff = \"500ms\"\n", nil,
			[]want{{2, "outbox.max_backoff", "must not exceed"}}},
		{"inline access token", "[matrix]\naccess_token = \"s3cr3t\"\n", nil,
			[]want{{2, "matrix.access_token", "secrets are not accepted inline; use matrix.access_token_file or the VIGIE_MATRIX_ACCESS_TOKEN environment variable"}}},
		{"inline password, misspelt", "[matrix]\npasword = \"s3cr3t\"\n", nil,
			[]want{{2, "matrix.pasword", "use matrix.password_file or the VIGIE_MATRIX_PASSWORD environment variable"}}},
		{"inline nomad token", "nomad.token = \"s3cr3t\"\n", nil,
			[]want{{1, "nomad.token", "use nomad.token_file or the NOMAD_TOKEN environment variable"}}},
		{"inline consul token", "consul = { token = \"s3cr3t\" }\n", nil,
			[]want{{1, "consul.token", "use consul.token_file or the CONSUL_HTTP_TOKEN environment variable"}}},
		{"other secret-looking key", "[matrix]\nsigning_secret = \"s3cr3t\"\n", nil,
			[]want{{2, "matrix.signing_secret", "secrets are not accepted inline"}}},
		{"missing secret file", "\n[nomad]\ntoken_file = \"nope\"\n", nil,
			[]want{{3, "nomad.token_file", "cannot read secret file"}}},
		{"bad NOMAD_ADDR", "", []string{"NOMAD_ADDR", "ftp://x"},
			[]want{{0, "nomad.address", "(from environment variable NOMAD_ADDR)"}}},
		{"bad CONSUL_HTTP_SSL", "", []string{"CONSUL_HTTP_ADDR", "c:8500", "CONSUL_HTTP_SSL", "maybe"},
			[]want{{0, "consul.address", `CONSUL_HTTP_SSL must be true or false, got "maybe"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, t.TempDir(), tt.toml)
			_, err := load(path, env(tt.env...))
			ps := problems(t, err)
			if len(ps) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(tt.want), err)
			}
			for i, w := range tt.want {
				p := ps[i]
				if p.Line != w.line || p.Key != w.key || !strings.Contains(p.Msg, w.msg) || p.File != path {
					t.Errorf("problem %d = %+v\nwant line %d, key %q, msg containing %q", i, p, w.line, w.key, w.msg)
				}
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestSyntaxErrorFormat(t *testing.T) {
	path := writeConfig(t, t.TempDir(), "[log]\nlevel = \"info\nformat = \"json\"\n")
	_, err := load(path, env())
	ps := problems(t, err)
	if len(ps) != 1 || ps[0].Line != 2 || ps[0].Column == 0 {
		t.Fatalf("problems = %+v", ps)
	}
	if want := fmt.Sprintf("%s:2:%d: ", path, ps[0].Column); !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}
}

func TestAllProblemsReportedInOrder(t *testing.T) {
	path := writeConfig(t, t.TempDir(), `[matrix]
homeserver = "ftp://x"
homserver = "https://m.org"

[commands]
timeout = 5

[log]
level = "loud"
`)
	_, err := load(path, env("NOMAD_ADDR", "nomad:4646"))
	want := strings.Join([]string{
		path + `:2: matrix.homeserver: must be an http(s) URL such as "https://matrix.example.org", got "ftp://x"`,
		path + `:3: matrix.homserver: unknown key (did you mean "matrix.homeserver"?)`,
		path + `:6: commands.timeout: must be a duration string with a unit, got the bare number 5 (write "5s" or "5m")`,
		path + `:9: log.level: must be one of trace, debug, info, warn, error; got "loud"`,
		path + `: nomad.address: must be an http(s) URL such as "http://127.0.0.1:4646", got "nomad:4646" (from environment variable NOMAD_ADDR)`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("error =\n%v\nwant\n%s", err, want)
	}
}

func TestUnreadableConfigFile(t *testing.T) {
	_, err := load(filepath.Join(t.TempDir(), "missing.toml"), env())
	var errs *Errors
	if !errors.Is(err, fs.ErrNotExist) || errors.As(err, &errs) {
		t.Errorf("err = %#v, want a plain not-exist error", err)
	}
}

func TestSecrets(t *testing.T) {
	const secret = "hunter2-very-secret"
	tests := []struct {
		name       string
		file       string // content of dir/tok, "" for none
		key        bool   // whether access_token_file is set
		env        []string
		wantValue  string
		wantSource string // "" for unset; "file" stands for "file <dir>/tok"
		wantErr    string
	}{
		{"from file, trimmed", secret + " \n\n", true, nil, secret, "file", ""},
		{"from env", "", false, []string{"VIGIE_MATRIX_ACCESS_TOKEN", secret}, secret, "env VIGIE_MATRIX_ACCESS_TOKEN", ""},
		{"file wins over env", secret, true, []string{"VIGIE_MATRIX_ACCESS_TOKEN", "from-env"}, secret, "file", ""},
		{"neither", "", false, nil, "", "", ""},
		{"missing file does not fall back to env", "", true, []string{"VIGIE_MATRIX_ACCESS_TOKEN", secret}, "", "", "cannot read secret file"},
		{"empty file", " \n", true, nil, "", "", "is empty"},
		{"huge file", strings.Repeat("x", maxSecretSize+1), true, nil, "", "", "larger than 64 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.file != "" {
				writeFile(t, filepath.Join(dir, "tok"), tt.file)
			}
			doc := "[matrix]\nhomeserver = \"https://m.org\"\n"
			if tt.key {
				doc += "access_token_file = \"tok\"\n"
			}
			c, err := load(writeConfig(t, dir, doc), env(tt.env...))
			if tt.wantErr != "" {
				ps := problems(t, err)
				if len(ps) != 1 || ps[0].Key != "matrix.access_token_file" || ps[0].Line != 3 || !strings.Contains(ps[0].Msg, tt.wantErr) {
					t.Fatalf("problems = %+v, want %q on matrix.access_token_file line 3", ps, tt.wantErr)
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := c.Matrix.AccessToken
			wantSource := tt.wantSource
			if wantSource == "file" {
				wantSource = "file " + filepath.Join(dir, "tok")
			}
			if s.Reveal() != tt.wantValue || s.Source != wantSource || s.IsSet() != (tt.wantValue != "") {
				t.Errorf("secret = %q from %q, want %q from %q", s.Reveal(), s.Source, tt.wantValue, wantSource)
			}
		})
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	const secret = "hunter2-very-secret"
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "pw"), secret)
	path := writeConfig(t, dir, "[matrix]\npassword_file = \"pw\"\n")
	c, err := load(path, env(
		"VIGIE_MATRIX_ACCESS_TOKEN", secret, "VIGIE_MATRIX_PICKLE_KEY", secret,
		"NOMAD_TOKEN", secret, "CONSUL_HTTP_TOKEN", secret))
	if err != nil {
		t.Fatal(err)
	}
	if c.Matrix.Password.Reveal() != secret || c.Nomad.Token.Reveal() != secret {
		t.Fatal("secrets not loaded")
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var ps []string
	for _, p := range c.MatrixProblems() {
		ps = append(ps, p.String())
	}
	outputs := map[string]string{
		"Summary":         c.Summary(),
		"fmt":             fmt.Sprintf("%v %+v %#v", c, c, c),
		"fmt struct":      fmt.Sprintf("%v %+v %#v", *c, c.Matrix, c.Nomad.Token),
		"json":            string(js),
		"MatrixProblems":  strings.Join(ps, "\n"),
		"Secret.GoString": c.Consul.Token.GoString(),
	}
	for name, out := range outputs {
		if strings.Contains(out, secret) {
			t.Errorf("%s leaks the secret:\n%s", name, out)
		}
	}
	for _, want := range []string{"from file " + filepath.Join(dir, "pw"), "from env NOMAD_TOKEN", "from env VIGIE_MATRIX_PICKLE_KEY"} {
		if !strings.Contains(outputs["Summary"], want) {
			t.Errorf("Summary lacks %q:\n%s", want, outputs["Summary"])
		}
	}
	if !strings.Contains(outputs["fmt"], redacted) {
		t.Errorf("fmt output does not show %s: %s", redacted, outputs["fmt"])
	}
}

func TestEnvPrecedence(t *testing.T) {
	tests := []struct {
		name       string
		toml       string
		env        []string
		wantNomad  string
		wantConsul string
		wantRegion string
	}{
		{"defaults", "", nil, "http://127.0.0.1:4646", "http://127.0.0.1:8500", ""},
		{"env over default", "",
			[]string{"NOMAD_ADDR", "https://n:4646", "NOMAD_REGION", "eu", "CONSUL_HTTP_ADDR", "https://c:8501"},
			"https://n:4646", "https://c:8501", "eu"},
		{"file over env",
			"[nomad]\naddress = \"http://file:4646\"\nregion = \"us\"\n[consul]\naddress = \"http://file:8500\"\n",
			[]string{"NOMAD_ADDR", "https://n:4646", "NOMAD_REGION", "eu", "CONSUL_HTTP_ADDR", "https://c:8501"},
			"http://file:4646", "http://file:8500", "us"},
		{"consul address without scheme", "", []string{"CONSUL_HTTP_ADDR", "c:8500"},
			"http://127.0.0.1:4646", "http://c:8500", ""},
		{"CONSUL_HTTP_SSL upgrades to https", "", []string{"CONSUL_HTTP_ADDR", "c:8501", "CONSUL_HTTP_SSL", "true"},
			"http://127.0.0.1:4646", "https://c:8501", ""},
		{"CONSUL_HTTP_SSL upgrades explicit http", "", []string{"CONSUL_HTTP_ADDR", "http://c:8501", "CONSUL_HTTP_SSL", "1"},
			"http://127.0.0.1:4646", "https://c:8501", ""},
		{"CONSUL_HTTP_SSL false", "", []string{"CONSUL_HTTP_ADDR", "c:8500", "CONSUL_HTTP_SSL", "false"},
			"http://127.0.0.1:4646", "http://c:8500", ""},
		{"CONSUL_HTTP_SSL does not touch the file's address", "[consul]\naddress = \"http://file:8500\"\n",
			[]string{"CONSUL_HTTP_SSL", "true"},
			"http://127.0.0.1:4646", "http://file:8500", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(writeConfig(t, t.TempDir(), tt.toml), env(tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			if c.Nomad.Address != tt.wantNomad || c.Consul.Address != tt.wantConsul || c.Nomad.Region != tt.wantRegion {
				t.Errorf("nomad %q region %q, consul %q; want %q %q, %q",
					c.Nomad.Address, c.Nomad.Region, c.Consul.Address, tt.wantNomad, tt.wantRegion, tt.wantConsul)
			}
		})
	}

	// Without a file the environment still applies, and NOMAD_NAMESPACE too.
	c, err := load("", env("NOMAD_NAMESPACE", "ops", "NOMAD_ADDR", "https://n:4646"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Nomad.Namespace != "ops" || c.Nomad.Address != "https://n:4646" {
		t.Errorf("nomad = %+v", c.Nomad)
	}
	if s := c.Summary(); !strings.Contains(s, "https://n:4646 (from environment variable NOMAD_ADDR)") {
		t.Errorf("Summary does not say where the address came from:\n%s", s)
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	confDir := filepath.Join(dir, "etc")
	writeFile(t, filepath.Join(confDir, "secrets", "nomad"), "nt")
	abs := filepath.Join(dir, "abs-consul")
	writeFile(t, abs, "ct")

	path := writeConfig(t, confDir, fmt.Sprintf("[nomad]\ntoken_file = \"secrets/nomad\"\n[consul]\ntoken_file = %q\n", abs))
	c, err := load(path, env())
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(confDir, "secrets", "nomad"); c.Nomad.TokenFile != want || c.Nomad.Token.Reveal() != "nt" {
		t.Errorf("nomad.token_file = %q (%q), want %q", c.Nomad.TokenFile, c.Nomad.Token.Reveal(), want)
	}
	if c.Consul.TokenFile != abs || c.Consul.Token.Reveal() != "ct" {
		t.Errorf("consul.token_file = %q, want %q", c.Consul.TokenFile, abs)
	}
	if want := filepath.Join(confDir, "vigie-data"); c.DataDir != want {
		t.Errorf("default data_dir = %q, want %q", c.DataDir, want)
	}

	path = writeConfig(t, confDir, "data_dir = \"../state\"\n")
	if c, err = load(path, env()); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "state"); c.DataDir != want {
		t.Errorf("data_dir = %q, want %q", c.DataDir, want)
	}

	// Without a file, paths stay relative to the working directory.
	if c, err = load("", env()); err != nil || c.DataDir != "./vigie-data" {
		t.Errorf("data_dir without file = %q, %v", c.DataDir, err)
	}
}

func TestMatrixProblems(t *testing.T) {
	const base = "[matrix]\nhomeserver = \"https://m.org\"\nuser_id = \"@v:m.org\"\n"
	tests := []struct {
		name string
		toml string
		env  []string
		want []string // Problem.String() without the file prefix
	}{
		{"complete", base, []string{"VIGIE_MATRIX_ACCESS_TOKEN", "t", "VIGIE_MATRIX_PICKLE_KEY", "k"}, nil},
		{"password and no encryption", base + "encryption = false\n", []string{"VIGIE_MATRIX_PASSWORD", "p"}, nil},
		{"nothing set", "", nil, []string{
			": matrix.access_token_file: no Matrix credential: set matrix.access_token_file or VIGIE_MATRIX_ACCESS_TOKEN (preferred), or matrix.password_file or VIGIE_MATRIX_PASSWORD",
			": matrix.homeserver: must be set",
			": matrix.pickle_key_file: encryption is on but no pickle key is set",
			": matrix.user_id: must be set",
		}},
		{"both credentials", base + "encryption = false\n",
			[]string{"VIGIE_MATRIX_ACCESS_TOKEN", "t", "VIGIE_MATRIX_PASSWORD", "p"},
			[]string{": matrix.password_file: both an access token (from env VIGIE_MATRIX_ACCESS_TOKEN) and a password (from env VIGIE_MATRIX_PASSWORD) are set"}},
		{"pickle key missing, line of encryption key unknown but file key known",
			base + "pickle_key_file = \"\"\n", []string{"VIGIE_MATRIX_PASSWORD", "p"},
			[]string{":4: matrix.pickle_key_file: encryption is on but no pickle key is set (it encrypts the bot's crypto keys at rest): generate one with `openssl rand -hex 32"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, t.TempDir(), tt.toml)
			c, err := load(path, env(tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			ps := c.MatrixProblems()
			if len(ps) != len(tt.want) {
				t.Fatalf("got %v, want %d problems", ps, len(tt.want))
			}
			for i, p := range ps {
				if got := p.String(); !strings.HasPrefix(got, path+tt.want[i]) {
					t.Errorf("problem %d = %q\nwant prefix %q", i, got, path+tt.want[i])
				}
			}
		})
	}
}

// commentedKey matches a commented-out "key = value" line of the example,
// or a commented-out [[array.table]] or [table] header.
var commentedKey = regexp.MustCompile(`(?m)^# ([a-z_]+ = .*|\[\[[a-z_.]+\]\]|\[[a-z_.]+\])$`)

// entryIndex strips array entry indexes from keys: alerts.rooms[0].room.
var entryIndex = regexp.MustCompile(`\[\d+\]`)

func TestExampleConfig(t *testing.T) {
	const example = "../config.example.toml"
	// Without the secrets its head lists, it says what is missing.
	if _, err := load(example, env()); !strings.Contains(fmt.Sprint(err), "ldap.bind_dn: needs its password") {
		t.Fatalf("example without secrets: %v", err)
	}
	c, err := load(example, env("VIGIE_LDAP_BIND_PASSWORD", "pw"))
	if err != nil {
		t.Fatalf("example does not load:\n%v", err)
	}
	if c.Matrix.Homeserver == "" || c.Matrix.UserID == "" {
		t.Error("example lacks real-looking homeserver and user_id")
	}

	// Every key of the schema must be documented, as a setting or as a
	// commented-out default; uncommenting all of those must stay valid TOML.
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	full := commentedKey.ReplaceAll(data, []byte("$1"))
	d := &decoder{}
	if !d.decodeDocument(full, Default()) {
		t.Fatalf("example with keys uncommented is not valid TOML: %v", d.problems)
	}
	for _, p := range d.problems {
		t.Errorf("example with keys uncommented: %s", p)
	}
	documented := map[string]bool{}
	for k := range d.lines {
		documented[entryIndex.ReplaceAllString(k, "")] = true
	}
	for _, k := range schemaKeys() {
		if !documented[joinKey(k)] {
			t.Errorf("key %s is not documented in %s", joinKey(k), example)
		}
	}
}

func TestDurationAndSecretText(t *testing.T) {
	for in, want := range map[string]string{
		"30s": "30s", "5m": "5m", "90m": "1h30m", "24h": "24h", "1h0m1s": "1h0m1s", "1.5s": "1.5s", "0": "0s",
	} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if b, _ := d.MarshalText(); string(b) != want {
			t.Errorf("%q → %q, want %q", in, b, want)
		}
	}
	var d Duration
	if err := d.UnmarshalText([]byte("-5s")); err == nil {
		t.Error("negative duration accepted")
	}

	s := NewSecret("v", "env X")
	if b, _ := s.MarshalText(); string(b) != redacted || s.String() != redacted || !s.IsSet() || s.Reveal() != "v" {
		t.Errorf("secret = %s %q %v", b, s.String(), s.IsSet())
	}
}

func FuzzLoad(f *testing.F) {
	f.Add("[matrix]\nhomserver = \"https://m.org\"\n")
	f.Add("[commands]\ntimeout = 5\n[outbox]\nmin_backoff = \"-1s\"\n")
	f.Add("matrix = { allowed_inviters = [\":a\", [1], {x = 1}], token = 'x' }\n")
	f.Add("[[nomad]]\n[nomad.x]\n\"a.b\".c = 1\n")
	f.Add("a = [\n1,\n")
	f.Add("[nomad]\ntoken_file = \"/dev/zero\"\n")
	if example, err := os.ReadFile("../config.example.toml"); err == nil {
		f.Add(string(example))
	}
	f.Fuzz(func(t *testing.T, doc string) {
		path := writeConfig(t, t.TempDir(), doc)
		c, err := load(path, env())
		if err == nil {
			if c == nil {
				t.Fatal("nil config without error")
			}
			c.MatrixProblems()
			c.Summary()
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) {
			t.Fatalf("error is %T, not *Errors: %v", err, err)
		}
		if len(errs.Problems) == 0 {
			t.Fatal("*Errors without problems")
		}
		for _, p := range errs.Problems {
			if p.Key == "" && p.Line <= 0 {
				t.Fatalf("problem locates nothing: %+v", p)
			}
		}
	})
}

func TestAlertRoomsArrayOfTables(t *testing.T) {
	path := writeConfig(t, t.TempDir(), "[[alerts.rooms]]\nroom = \"!ops:example.org\"\njobs = [\"web*\"]\n\n[[alerts.rooms]]\nroom = \"ops\"\nmin_severity = \"critcal\"\njbos = [\"x\"]\nnodes = [\"[\"]\n")
	_, err := load(path, env())
	ps := problems(t, err)
	want := []string{
		path + `:6: alerts.rooms[1].room: must be a room ID`,
		path + `:7: alerts.rooms[1].min_severity: must be one of info, warning, critical; got "critcal" (did you mean "critical"?)`,
		path + `:8: alerts.rooms[1].jbos: unknown key (did you mean "alerts.rooms[1].jobs"?)`,
		path + `:9: alerts.rooms[1].nodes: entry "[": bad glob`,
	}
	if len(ps) != len(want) {
		t.Fatalf("problems:\n%v", err)
	}
	for i, p := range ps {
		if !strings.HasPrefix(p.String(), want[i]) {
			t.Errorf("problem %d = %q\nwant prefix %q", i, p.String(), want[i])
		}
	}
	good, err := load(writeConfig(t, t.TempDir(), "[[alerts.rooms]]\nroom = \"!ops:example.org\"\njobs = [\"web*\"]\n[[alerts.rooms]]\nroom = \"!db:example.org\"\nmin_severity = \"critical\"\n"), env())
	if err != nil || len(good.Alerts.Rooms) != 2 || good.Alerts.Rooms[0].Jobs[0] != "web*" || good.Alerts.Rooms[1].MinSeverity != "critical" {
		t.Fatalf("%+v %v", good.Alerts.Rooms, err)
	}
}

// TLS settings come from the file or the variables Nomad's and Consul's
// CLIs read; their files must load and go with an https address.
func TestTLSSettings(t *testing.T) {
	pki := testpki.New(t, "cluster")
	c, err := load("", env("NOMAD_ADDR", "https://n:4646", "NOMAD_CACERT", pki.CAFile, "NOMAD_CLIENT_CERT", pki.ClientCert,
		"NOMAD_CLIENT_KEY", pki.ClientKey, "NOMAD_TLS_SERVER_NAME", "server.global.nomad",
		"CONSUL_HTTP_ADDR", "https://c:8501", "CONSUL_CACERT", pki.CAFile, "CONSUL_TLS_SERVER_NAME", "consul.service.consul"))
	if err != nil {
		t.Fatal(err)
	}
	want := TLS{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "server.global.nomad"}
	if c.Nomad.TLS != want || c.Consul.TLS != (TLS{CAFile: pki.CAFile, ServerName: "consul.service.consul"}) {
		t.Fatalf("from the environment: %+v %+v", c.Nomad.TLS, c.Consul.TLS)
	}
	tc, err := c.Nomad.TLS.Client()
	if err != nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "server.global.nomad" || tc.InsecureSkipVerify {
		t.Fatalf("nomad TLS client: %+v %v", tc, err)
	}

	dir := t.TempDir()
	path := writeConfig(t, dir, fmt.Sprintf(`[nomad]
address = "http://n:4646"
[nomad.tls]
ca_file = %q
cert_file = %q
[consul.tls]
ca_file = "missing.pem"
cert_file = %q
key_file = %q
`, pki.ClientKey, pki.ClientCert, pki.ClientCert, pki.CAFile))
	_, err = load(path, env())
	for _, w := range []string{
		path + ":2: nomad.address: is http://n:4646, but nomad.tls is set: use https://",
		path + ":4: nomad.tls.ca_file: CA file " + pki.ClientKey + " holds no PEM certificate",
		path + ":5: nomad.tls.cert_file: a client certificate needs both cert_file and key_file",
		path + ":7: consul.tls.ca_file: cannot read the CA file: open " + filepath.Join(dir, "missing.pem"),
		path + ":8: consul.tls.cert_file: client certificate " + pki.ClientCert + " with key " + pki.CAFile,
	} {
		if !strings.Contains(fmt.Sprint(err), w) {
			t.Errorf("problems lack %q:\n%v", w, err)
		}
	}
}
