package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigie/vigie/incidents"

	"github.com/vigie/vigie/internal/testenv"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vigie.toml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func vigie(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVersionAndUsage(t *testing.T) {
	if code, out, _ := vigie(t, "", "version"); code != 0 || !strings.HasPrefix(out, "vigie ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, errOut := vigie(t, ""); code != 2 || !strings.Contains(errOut, "Usage:") {
		t.Errorf("no args: %d %q", code, errOut)
	}
	if code, _, errOut := vigie(t, "", "deploy"); code != 2 || !strings.Contains(errOut, `unknown command "deploy"`) {
		t.Errorf("unknown: %d %q", code, errOut)
	}
	if code, _, _ := vigie(t, "", "run", "--nope"); code != 2 {
		t.Errorf("bad flag: %d", code)
	}
}

func TestCheckConfig(t *testing.T) {
	good := writeConfig(t, "data_dir = \"data\"\n[matrix]\nhomeserver = \"https://matrix.example.org\"\nuser_id = \"@vigie:example.org\"\nencryption = false\n")
	t.Setenv("VIGIE_MATRIX_ACCESS_TOKEN", "syt_secret_token_value")
	code, out, errOut := vigie(t, "", "check-config", "--config", good)
	if code != 0 || !strings.Contains(out, "OK") || strings.Contains(out+errOut, "syt_secret_token_value") {
		t.Fatalf("good config: %d\n%s\n%s", code, out, errOut)
	}

	bad := writeConfig(t, "[matrix]\nhomserver = \"https://x\"\n\n[commands]\ntimeout = 5\n")
	code, _, errOut = vigie(t, "", "check-config", "--config", bad)
	if code != 1 || !strings.Contains(errOut, "2 problem(s)") ||
		!strings.Contains(errOut, bad+":2: matrix.homserver: unknown key") || !strings.Contains(errOut, `did you mean "matrix.homeserver"`) ||
		!strings.Contains(errOut, bad+":5: commands.timeout") {
		t.Fatalf("bad config: %d\n%s", code, errOut)
	}

	// Every problem in one run: the file's, the names it uses, the
	// directory's missing password.
	policy := writeConfig(t, "[ldap]\nurl = \"ldap://127.0.0.1:389\"\nbind_dn = \"cn=vigie,dc=example,dc=org\"\nuser_base_dn = \"ou=people,dc=example,dc=org\"\nlocalpart_domains = [\"example.org\"]\n[[policy.rules]]\ncommands = [\"ping\", \"delpoy\", \"confirm\"]\ngroups = [\"cn=ops,dc=example,dc=org\"]\n[alerts]\ndisabled_rules = [\"job-stoped\"]\nedit_interval = \"0s\"\n")
	code, _, errOut = vigie(t, "", "check-config", "--config", policy)
	for _, want := range []string{
		"4 problem(s)",
		policy + ":3: ldap.bind_dn: needs its password: bind_password_file, or the environment variable VIGIE_LDAP_BIND_PASSWORD",
		policy + ":7: policy.rules[0].commands: unknown command \"delpoy\" (did you mean \"deploy\"?)",
		policy + ":10: alerts.disabled_rules: unknown rule \"job-stoped\" (did you mean \"job-stopped\"?)",
		policy + ":11: alerts.edit_interval: must be greater than 0",
	} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("check-config lacks %q: %d\n%s", want, code, errOut)
		}
	}
	// What only building the directory tells, once the file is sound.
	t.Setenv("VIGIE_LDAP_BIND_PASSWORD", "pw")
	unbuildable := writeConfig(t, "[ldap]\nurl = \"ldaps://127.0.0.1:636\"\nbind_dn = \"cn=vigie,dc=example,dc=org\"\nuser_base_dn = \"ou=people,dc=example,dc=org\"\nlocalpart_domains = [\"example.org\"]\nca_file = \"/nonexistent/ca.pem\"\n")
	if code, _, errOut := vigie(t, "", "check-config", "--config", unbuildable); code != 1 || !strings.Contains(errOut, "ldap: ") || !strings.Contains(errOut, "/nonexistent/ca.pem") {
		t.Errorf("directory that cannot be built: %d\n%s", code, errOut)
	}
	t.Setenv("VIGIE_LDAP_BIND_PASSWORD", "")

	t.Setenv("VIGIE_MATRIX_ACCESS_TOKEN", "")
	incomplete := writeConfig(t, "[matrix]\nhomeserver = \"https://matrix.example.org\"\nuser_id = \"@vigie:example.org\"\nencryption = false\n")
	if code, _, errOut := vigie(t, "", "check-config", "--config", incomplete); code != 1 || !strings.Contains(errOut, "VIGIE_MATRIX_ACCESS_TOKEN") {
		t.Fatalf("missing credentials: %d\n%s", code, errOut)
	}
	if code, _, errOut := vigie(t, "", "run", "--config", incomplete); code != 1 || !strings.Contains(errOut, "not enough to connect to Matrix") {
		t.Fatalf("run without credentials: %d\n%s", code, errOut)
	}
	if code, _, errOut := vigie(t, "", "check-config", "--config", filepath.Join(t.TempDir(), "missing.toml")); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Fatalf("missing file: %d\n%s", code, errOut)
	}
}

func TestConsoleAnswersInOrderAndExits(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, "data_dir = \"data\"\n")
	code, out, errOut := vigie(t, "ping\nhelp\n!vigie pnig\nping \"unterminated\n", "console", "--config", cfg, "--as", "@alice:example.org")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != "pong" || !strings.Contains(out, "Vigie commands") ||
		!strings.Contains(out, "Did you mean ping?") || !strings.HasSuffix(out, "missing \". Quote arguments with spaces: deploy web image=\"my image\"\n") {
		t.Fatalf("output:\n%s", out)
	}
	if !strings.Contains(out, "pong\nVigie commands") {
		t.Fatalf("replies out of order:\n%s", out)
	}
	// The console shares the audit log with the bot.
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), "data", "vigie.db")); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := vigie(t, "", "console", "--config", cfg, "--as", "alice"); code != 1 || !strings.Contains(errOut, "not a Matrix user ID") {
		t.Fatalf("bad --as: %d %s", code, errOut)
	}
}

// config.example.toml names every built-in rule where it says how to switch
// them off.
func TestExampleConfigNamesEveryRule(t *testing.T) {
	example, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(example), "# Built-in alert rules to switch off")
	end := strings.Index(string(example), "# disabled_rules = []")
	if start < 0 || end < start {
		t.Fatal("config.example.toml no longer documents alerts.disabled_rules")
	}
	doc := strings.Join(strings.Fields(strings.ReplaceAll(string(example[start:end]), "#", " ")), " ")
	for _, name := range incidents.RuleNames() {
		if !strings.Contains(doc, " "+name+",") && !strings.Contains(doc, " "+name+" ") {
			t.Errorf("rule %s is not listed in config.example.toml", name)
		}
	}
}

// SIGINT or SIGTERM end the console promptly even while its input stays
// open (observed: up for 14 minutes after a SIGTERM).
func TestConsoleExitsOnSignalWithInputOpen(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, "data_dir = \"data\"\n")
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		cmd := exec.Command(vigieBinary(t), "console", "--config", cfg)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		out := readLines(stdout)
		fmt.Fprintln(stdin, "ping")
		out.waitFor(t, 10*time.Second, "pong")
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%v: console exited with %v", sig, err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%v: the console did not exit with its input open", sig)
		}
	}
}

// config.example.toml, as shipped, passes check-config once the secrets its
// head lists are given, and says which are missing otherwise.
func TestExampleConfigPassesCheckConfig(t *testing.T) {
	const example = "../../config.example.toml"
	for _, v := range []string{"VIGIE_MATRIX_ACCESS_TOKEN", "VIGIE_MATRIX_PASSWORD", "VIGIE_MATRIX_PICKLE_KEY", "VIGIE_LDAP_BIND_PASSWORD"} {
		t.Setenv(v, "")
	}
	code, _, errOut := vigie(t, "", "check-config", "--config", example)
	for _, want := range []string{"VIGIE_LDAP_BIND_PASSWORD", "VIGIE_MATRIX_ACCESS_TOKEN", "VIGIE_MATRIX_PICKLE_KEY"} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("without secrets, check-config does not name %s: %d\n%s", want, code, errOut)
		}
	}
	t.Setenv("VIGIE_MATRIX_ACCESS_TOKEN", "syt_example")
	t.Setenv("VIGIE_MATRIX_PICKLE_KEY", strings.Repeat("ab", 32))
	t.Setenv("VIGIE_LDAP_BIND_PASSWORD", "example")
	if code, out, errOut := vigie(t, "", "check-config", "--config", example); code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("with its secrets: %d\n%s%s", code, out, errOut)
	}
}

// check-config on backups: the next runs of each schedule, pg_dump
// missing or older than the server as problems naming both versions, a
// server out of reach as a note.
func TestCheckConfigBackups(t *testing.T) {
	pg := testenv.StartPostgres(t)
	dir := t.TempDir()
	old := filepath.Join(dir, "old-pg_dump")
	if err := os.WriteFile(old, []byte("#!/bin/sh\necho 'pg_dump (PostgreSQL) 13.9'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ name, body string }{{"pw", pg.Password}, {"key", "GKexample"}, {"secret", "s3-secret"}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf := func(pgDump string) string {
		target := pgTargetTOML("main-db", "30 3 * * *", "postgres", pg, filepath.Join(dir, "pw"))
		target = strings.Replace(target, filepath.Join(pg.BinDir, "pg_dump"), pgDump, 1)
		return writeConfig(t, target+fmt.Sprintf(`[s3]
endpoint = "http://127.0.0.1:3900"
bucket = "backups"
access_key_id_file = %q
secret_access_key_file = %q
`, filepath.Join(dir, "key"), filepath.Join(dir, "secret")))
	}
	code, out, errOut := vigie(t, "", "check-config", "--config", conf(filepath.Join(pg.BinDir, "pg_dump")))
	if code != 0 || !strings.Contains(out, `backups         "30 3 * * *", next `) || strings.Contains(out, "note:") {
		t.Fatalf("a sound backup config: %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = vigie(t, "", "check-config", "--config", conf(old))
	if code != 1 || !strings.Contains(errOut, "backups.targets[0].pg_dump_path: pg_dump (PostgreSQL) 13.9 is older than the server (PostgreSQL 15.") {
		t.Fatalf("an old pg_dump: %d\n%s", code, errOut)
	}
	code, _, errOut = vigie(t, "", "check-config", "--config", conf("/nonexistent/pg_dump"))
	if code != 1 || !strings.Contains(errOut, "backups.targets[0].pg_dump_path: /nonexistent/pg_dump not found") {
		t.Fatalf("no pg_dump: %d\n%s", code, errOut)
	}
	pg.Stop()
	code, out, errOut = vigie(t, "", "check-config", "--config", conf(filepath.Join(pg.BinDir, "pg_dump")))
	if code != 0 || !strings.Contains(out, "note: backup main-db: cannot compare pg_dump with the server now") {
		t.Fatalf("the server out of reach: %d\n%s%s", code, out, errOut)
	}
}
