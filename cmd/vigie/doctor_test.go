package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/internal/fakenomad"
	"github.com/vigie/vigie/internal/testenv"
)

// doctorLine is one row of the doctor's table.
type doctorLine struct{ status, detail string }

var doctorRow = regexp.MustCompile(`^(\S+)\s+(.+?)\s+(ok|FAIL|warn|skip)\s+(.*)$`)

// doctorTable reads the table "vigie doctor" prints, by "component check".
func doctorTable(t *testing.T, out string) map[string]doctorLine {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "COMPONENT") {
		t.Fatalf("not a doctor table:\n%s", out)
	}
	rows := map[string]doctorLine{}
	for _, l := range lines[1:] {
		if l == "" {
			break // the summary follows
		}
		m := doctorRow.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("row %q is not COMPONENT CHECK STATUS DETAIL", l)
		}
		rows[m[1]+" "+m[2]] = doctorLine{m[3], m[4]}
	}
	return rows
}

// wantRow checks a row's status and that its detail holds every want.
func wantRow(t *testing.T, rows map[string]doctorLine, key, status string, wants ...string) {
	t.Helper()
	r, ok := rows[key]
	if !ok {
		t.Errorf("no row %q", key)
		return
	}
	if r.status != status {
		t.Errorf("%s: %s %q, want %s", key, r.status, r.detail, status)
		return
	}
	for _, w := range wants {
		if !strings.Contains(r.detail, w) {
			t.Errorf("%s: %q lacks %q", key, r.detail, w)
		}
	}
}

// doctorEnv is every server a configuration can name: Dendrite (with the
// bot, which has run once and joined a room), slapd, PostgreSQL, S3, a
// fake Nomad with ACLs, and a fake Consul holding a Stolon cluster.
type doctorEnv struct {
	m       *matrixEnv
	room    id.RoomID
	ldap    *testenv.Slapd
	pg      *testenv.Postgres
	s3      *testenv.S3
	nomad   *fakenomad.Server
	consul  *fakeconsul.Server
	secrets []string
}

// doctorSetup is what differs between the configurations of a test.
type doctorSetup struct {
	dataDir      string
	nomadURL     string
	ldapURL      string
	ldapPassword string
	bucket       string
	pgDump       string
	rooms        []id.RoomID
}

const doctorNomadToken = "nomad-token-9f2c1e"

func newDoctorEnv(t *testing.T) *doctorEnv {
	e := &doctorEnv{m: newMatrixEnv(t)}
	e.room = e.m.alice.CreateRoom(t, false, e.m.botID)
	e.s3 = testenv.StartS3(t)
	e.s3.CreateBucket(t, "backups")
	e.consul = fakeconsul.New()
	t.Cleanup(e.consul.Close)
	// The bot runs once, as the configurations checked below have it (one
	// instance of [ha]): it joins the room it is invited to, stores its
	// session, creates its device and crypto store, then stops.
	cfg, err := os.ReadFile(e.m.config)
	if err != nil {
		t.Fatal(err)
	}
	ha := fmt.Sprintf("[nomad]\nwatch = false\n[consul]\naddress = %q\nwatch = false\n[s3]\nendpoint = %q\nbucket = \"backups\"\n"+
		"access_key_id_file = %q\nsecret_access_key_file = %q\n[ha]\nenabled = true\ninstance = \"doctor-test\"\n",
		e.consul.URL, e.s3.URL, e.write(t, "s3-key", e.s3.AccessKey), e.write(t, "s3-secret", e.s3.SecretKey))
	if err := os.WriteFile(e.m.config, append(cfg, ha...), 0o600); err != nil {
		t.Fatal(err)
	}
	bot, _ := e.m.start(t)
	e.m.alice.WaitForJoin(t, e.room, e.m.botID, 30*time.Second)
	bot.stop(t)

	e.ldap = testenv.StartSlapd(t, opsLDIF)
	e.pg = testenv.StartPostgres(t)
	e.nomad = fakenomad.New(t, fakenomad.Config{Token: doctorNomadToken})
	if err := e.consul.LoadKV(fakeconsul.StolonState("normal")); err != nil {
		t.Fatal(err)
	}
	e.secrets = []string{"bot-password-1", e.ldap.AdminPassword, e.pg.Password, e.s3.SecretKey, doctorNomadToken}
	return e
}

func (e *doctorEnv) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(e.m.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// config writes a configuration naming every server.
func (e *doctorEnv) config(t *testing.T, name string, s doctorSetup) string {
	t.Helper()
	var rooms strings.Builder
	for _, r := range s.rooms {
		fmt.Fprintf(&rooms, "[[alerts.rooms]]\nroom = %q\n", r)
	}
	return e.write(t, name, fmt.Sprintf(`data_dir = %q
[matrix]
homeserver = %q
user_id = %q
password_file = %q
pickle_key_file = %q
allowed_inviters = [%q]
[nomad]
address = %q
token_file = %q
[consul]
address = %q
[ha]
enabled = true
instance = "doctor-test"
[ldap]
url = %q
ca_file = %q
bind_dn = %q
bind_password_file = %q
user_base_dn = "ou=people,dc=example,dc=org"
localpart_domains = ["localhost"]
%s
[alerts]
%s
[[stolon.clusters]]
name = "main"
database = "postgres"
[stolon.clusters.postgres]
host = "127.0.0.1"
port = %d
user = %q
password_file = %q
sslmode = "disable"

[backups]
%s
[[backups.targets]]
name = "consul"
kind = "consul"

[s3]
endpoint = %q
bucket = %q
access_key_id_file = %q
secret_access_key_file = %q
`, s.dataDir, e.m.proxy.URL, e.m.botID, e.write(t, "bot-password", "bot-password-1"),
		e.write(t, "pickle", "0123456789abcdef0123456789abcdef"), e.m.alice.ID,
		s.nomadURL, e.write(t, "nomad-token", doctorNomadToken), e.consul.URL,
		s.ldapURL, e.ldap.CAFile, e.ldap.AdminDN, e.write(t, name+".ldap-password", s.ldapPassword), examplePolicy(t),
		rooms.String(), e.pg.Port, e.pg.User, e.write(t, "pg-password", e.pg.Password),
		strings.Replace(pgTargetTOML("main-db", "", "postgres", e.pg, filepath.Join(e.m.dir, "pg-password")),
			filepath.Join(e.pg.BinDir, "pg_dump"), s.pgDump, 1),
		e.s3.URL, s.bucket, e.write(t, "s3-key", e.s3.AccessKey), e.write(t, "s3-secret", e.s3.SecretKey)))
}

// doctor runs "vigie doctor" and checks that no secret shows.
func (e *doctorEnv) doctor(t *testing.T, args ...string) (int, string) {
	t.Helper()
	start := time.Now()
	code, out, errOut := vigie(t, "", append([]string{"doctor"}, args...)...)
	t.Logf("vigie doctor %s: exit %d in %s\n%s%s", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond), out, errOut)
	for _, s := range e.secrets {
		if strings.Contains(out+errOut, s) {
			t.Errorf("the output shows the secret %q", s)
		}
	}
	return code, out
}

// botDevices lists the bot's devices, through a login of its own that is
// logged out again.
func (e *doctorEnv) botDevices(t *testing.T) []id.DeviceID {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cli, err := mautrix.NewClient(e.m.hs.URL, e.m.botID, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword, Password: "bot-password-1", StoreCredentials: true,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: e.m.botID.String()}}); err != nil {
		t.Fatal(err)
	}
	defer cli.Logout(context.WithoutCancel(ctx))
	resp, err := cli.GetDevicesInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []id.DeviceID
	for _, d := range resp.Devices {
		if d.DeviceID != cli.DeviceID {
			out = append(out, d.DeviceID)
		}
	}
	return out
}

// "vigie doctor" against real servers: every line ok (or a warning that
// is true of the fakes) when all is well; then, with a wrong LDAP
// password, a missing bucket, a Nomad token refused a topic, a pg_dump too
// old and a room the bot is not in, each of those is a FAIL line that says
// what to fix, and the exit code is 1.
func TestDoctorAgainstRealServers(t *testing.T) {
	t.Parallel()
	e := newDoctorEnv(t)

	t.Run("all well", func(t *testing.T) {
		cfg := e.config(t, "good.toml", doctorSetup{dataDir: e.m.dataDir, nomadURL: e.nomad.URL, ldapURL: e.ldap.LDAPSURL,
			ldapPassword: e.ldap.AdminPassword, bucket: "backups", pgDump: filepath.Join(e.pg.BinDir, "pg_dump"), rooms: []id.RoomID{e.room}})
		code, out := e.doctor(t, "--config", cfg)
		if code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		rows := doctorTable(t, out)
		wantRow(t, rows, "vigie config", "ok", "is valid")
		wantRow(t, rows, "vigie data dir", "ok", "writable and private")
		wantRow(t, rows, "matrix reachable", "ok", "speaks Matrix up to v1.")
		wantRow(t, rows, "matrix login", "ok", "the bot's stored session of "+e.m.botID.String())
		wantRow(t, rows, "matrix room "+e.room.String(), "ok", "joined (alerts)")
		wantRow(t, rows, "matrix e2ee", "ok", "has its keys on the homeserver", "matrix-crypto.db")
		wantRow(t, rows, "nomad reachable", "ok", "leader")
		wantRow(t, rows, "nomad tls", "ok", "loopback")
		// The fake serves no policies: the capabilities cannot be told.
		wantRow(t, rows, "nomad token", "warn", `token "vigie" (client; policies vigie); but cannot read policy vigie (404`)
		wantRow(t, rows, "nomad acl: deploy", "skip", "see the token line")
		wantRow(t, rows, "nomad event stream", "ok", "Allocation:*", "Node:*")
		wantRow(t, rows, "consul reachable", "ok")
		wantRow(t, rows, "consul read health", "ok", "health checks visible")
		wantRow(t, rows, "consul ha lock vigie/leader", "ok", "may take the lock; nobody holds it")
		wantRow(t, rows, "consul ha session", "ok", "created and destroyed")
		wantRow(t, rows, "consul snapshot for backup consul", "ok", "may save snapshots")
		wantRow(t, rows, "stolon main keys", "ok", "stolon/cluster/main/: master keeper")
		wantRow(t, rows, "stolon main postgres", "ok", fmt.Sprintf("(major %d)", e.pg.Major))
		wantRow(t, rows, "stolon main failover write", "ok", "may write stolon/cluster/main/clusterdata")
		wantRow(t, rows, "ldap bind", "ok", "bound as "+e.ldap.AdminDN+" (ldaps)")
		wantRow(t, rows, "ldap sample user", "ok", "@alice:localhost is uid=alice,ou=people,dc=example,dc=org")
		wantRow(t, rows, "ldap groups (memberOf)", "ok", "@alice:localhost is in 2 group(s), of the policy's: cn=deployers,ou=groups,dc=example,dc=org; cn=ops,ou=groups,dc=example,dc=org")
		// config.example.toml's audit rule names cn=admins, which the test
		// directory does not have.
		wantRow(t, rows, "ldap policy groups", "warn", "cn=admins,ou=groups,dc=example,dc=org")
		wantRow(t, rows, "s3 bucket", "ok", "bucket backups")
		wantRow(t, rows, "s3 write and delete", "ok", "vigie/.vigie-doctor/probe-")
		wantRow(t, rows, "s3 ha replica", "ok", "newest: term 1, seq ", "written by doctor-test")
		wantRow(t, rows, "postgres main-db server", "ok", fmt.Sprintf("(major %d)", e.pg.Major))
		wantRow(t, rows, "postgres main-db pg_dump", "ok", fmt.Sprintf("can dump PostgreSQL %d", e.pg.Major))
		for k, r := range rows {
			if r.status == "FAIL" {
				t.Errorf("%s: FAIL %s", k, r.detail)
			}
		}
		for o := range e.s3.Client(t).ListObjects(t.Context(), "backups", minio.ListObjectsOptions{Recursive: true}) {
			if !strings.HasPrefix(o.Key, "vigie/ha/state/") { // the bot's replica, from its run
				t.Errorf("the write probe left %s behind (%v)", o.Key, o.Err)
			}
		}

		code, js := e.doctor(t, "--config", cfg, "--json")
		var doc struct {
			Checks []struct{ Component, Check, Status, Detail string }
			OK     bool
		}
		if err := json.Unmarshal([]byte(js), &doc); err != nil || code != 0 || !doc.OK || len(doc.Checks) != len(rows) {
			t.Errorf("--json: exit %d, %d checks (table: %d), err %v", code, len(doc.Checks), len(rows), err)
		}
	})

	t.Run("broken", func(t *testing.T) {
		deny := fakenomad.New(t, fakenomad.Config{Token: doctorNomadToken, DenyTopics: []string{"Node"}})
		oldDump := filepath.Join(t.TempDir(), "pg_dump")
		if err := os.WriteFile(oldDump, []byte("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		other := e.m.alice.CreateRoom(t, false)
		cfg := e.config(t, "broken.toml", doctorSetup{dataDir: filepath.Join(t.TempDir(), "fresh"), nomadURL: deny.URL, ldapURL: e.ldap.URL,
			ldapPassword: "not-the-password", bucket: "missing", pgDump: oldDump, rooms: []id.RoomID{e.room, other}})
		before := e.botDevices(t)
		code, out := e.doctor(t, "--config", cfg)
		if code != 1 {
			t.Errorf("exit code %d, want 1", code)
		}
		rows := doctorTable(t, out)
		wantRow(t, rows, "ldap bind", "FAIL", "Invalid Credentials", "check ldap.bind_dn and ldap.bind_password_file")
		wantRow(t, rows, "ldap sample user", "skip", "not bound")
		wantRow(t, rows, "s3 bucket", "FAIL", "NoSuchBucket", "garage bucket create missing")
		wantRow(t, rows, "s3 write and delete", "skip")
		wantRow(t, rows, "nomad event stream", "FAIL", "Nomad refused the topics Node:* (403)", "deploy/acl/nomad-watch.hcl")
		wantRow(t, rows, "postgres main-db pg_dump", "FAIL", "pg_dump (PostgreSQL) 9.6.24 is older than the server",
			fmt.Sprintf("set pg_dump_path to a pg_dump %d or newer", e.pg.Major))
		wantRow(t, rows, "matrix room "+other.String(), "FAIL", "is not a member", "invite it")
		wantRow(t, rows, "matrix room "+e.room.String(), "ok")
		// No stored session in a fresh data directory: the password is
		// tried with a device of the doctor's own, logged out again.
		wantRow(t, rows, "matrix login", "ok", "password of "+e.m.botID.String()+" accepted")
		wantRow(t, rows, "matrix e2ee", "warn", "has not logged in yet")
		wantRow(t, rows, "vigie data dir", "ok", "created at the first start")
		if after := e.botDevices(t); len(after) != len(before) {
			t.Errorf("the bot had devices %v, has %v after the doctor", before, after)
		}
		if !strings.Contains(out, "FAIL, ") {
			t.Errorf("no summary line:\n%s", out)
		}
	})
}

// Without servers: a configuration that uses nothing is all skip lines
// and exit 0; an unreachable Nomad is a FAIL and exit 1; bad flags exit 2.
func TestDoctorWithoutServers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf(`data_dir = %q
[nomad]
watch = false
[consul]
watch = false
`, filepath.Join(dir, "data")))
	code, out, errOut := vigie(t, "", "doctor", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	rows := doctorTable(t, out)
	wantRow(t, rows, "vigie config", "ok", "is valid")
	wantRow(t, rows, "vigie data dir", "ok", "does not exist yet")
	for _, k := range []string{"matrix homeserver", "nomad cluster", "consul cluster", "stolon clusters", "ldap directory", "s3 bucket", "postgres backups"} {
		wantRow(t, rows, k, "skip")
	}
	if len(rows) != 9 || !strings.HasSuffix(out, "\n0 FAIL, 2 ok, 7 skip\n") {
		t.Errorf("%d rows:\n%s", len(rows), out)
	}

	closed := testenv.FreeLoopbackAddr(t)
	cfg = writeConfig(t, fmt.Sprintf(`data_dir = %q
[nomad]
address = "http://%s"
[consul]
watch = false
`, filepath.Join(dir, "data"), closed))
	start := time.Now()
	code, out, _ = vigie(t, "", "doctor", "--config", cfg, "--timeout", "2s")
	if code != 1 || time.Since(start) > 10*time.Second {
		t.Errorf("unreachable Nomad: exit %d after %s\n%s", code, time.Since(start), out)
	}
	rows = doctorTable(t, out)
	wantRow(t, rows, "nomad reachable", "FAIL", "Nomad at http://"+closed+" is unreachable", "connection refused", "check nomad.address")
	wantRow(t, rows, "nomad token", "FAIL", "is unreachable")
	wantRow(t, rows, "nomad acl: alerts", "skip", "see the token line")
	wantRow(t, rows, "nomad event stream", "FAIL", "is unreachable")

	code, js, _ := vigie(t, "", "doctor", "--config", cfg, "--json", "--timeout", "2s")
	var doc struct {
		Checks []struct{ Component, Check, Status string }
		OK     bool
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil || code != 1 || doc.OK || len(doc.Checks) != len(rows) {
		t.Errorf("--json: exit %d, %v, %d checks\n%s", code, err, len(doc.Checks), js)
	}

	for _, args := range [][]string{{"doctor", "--nope"}, {"doctor", "extra"}, {"doctor", "--timeout", "soon"}} {
		if code, _, _ := vigie(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
