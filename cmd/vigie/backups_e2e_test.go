package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/internal/testenv"
)

// backupSeed is the application's database: a few tables, one owned by a
// role of its own.
const backupSeed = `
CREATE ROLE shop_owner LOGIN;
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 800) g;
ALTER TABLE items OWNER TO shop_owner;
CREATE TABLE baskets (id bigserial PRIMARY KEY, item int REFERENCES items (id), qty int);
INSERT INTO baskets (item, qty) SELECT 1 + g % 800, g % 7 FROM generate_series(1, 2500) g;
`

// pgTargetTOML is a [[backups.targets]] section dumping a database of pg
// with its own pg_dump.
func pgTargetTOML(name, schedule, database string, pg *testenv.Postgres, passwordFile string) string {
	return fmt.Sprintf(`[[backups.targets]]
name = %q
kind = "postgres"
schedule = %q
databases = [%q]
pg_dump_path = %q
[backups.targets.postgres]
host = "127.0.0.1"
port = %d
user = %q
password_file = %q
sslmode = "disable"
`, name, schedule, database, filepath.Join(pg.BinDir, "pg_dump"), pg.Port, pg.User, passwordFile)
}

// pgRows counts a database's rows per table.
func pgRows(t *testing.T, pg *testenv.Postgres, database string) map[string]int64 {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), pg.URL(database))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	out := map[string]int64{}
	for _, table := range []string{"items", "baskets"} {
		var n int64
		if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatalf("%s.%s: %v", database, table, err)
		}
		out[table] = n
	}
	return out
}

// waitBot waits for a bot message in the room (not a reply to a command)
// whose body contains every want, and returns it.
func (e *matrixEnv) waitBot(t *testing.T, room id.RoomID, within time.Duration, want ...string) *event.Event {
	t.Helper()
	var found *event.Event
	e.alice.WaitForMessages(t, room, within, func(msgs []*event.Event) bool {
		for _, m := range msgs {
			body := m.Content.AsMessage().Body
			if nc := m.Content.AsMessage().NewContent; nc != nil {
				body = nc.Body
			}
			if m.Sender != e.botID {
				continue
			}
			all := true
			for _, w := range want {
				all = all && strings.Contains(body, w)
			}
			if all {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// Backups end to end, on Dendrite, slapd, PostgreSQL and S3: a scheduled
// backup lands and the report lists it; a restore approved by a second
// person gives the same rows; a SIGKILL mid-upload leaves no manifest and
// no pending upload once Vigie is back; S3 stopping makes a failed-backup
// incident that the next good run resolves.
func TestBackupsEndToEnd(t *testing.T) {
	t.Parallel()
	e := newMatrixEnv(t)
	e.useDirectory(t)
	pg := testenv.StartPostgres(t)
	pg.Exec(t, "postgres", "CREATE DATABASE shop")
	pg.Exec(t, "shop", backupSeed)
	s3 := testenv.StartS3(t)
	s3.CreateBucket(t, "backups")
	consul := fakeconsul.New()
	t.Cleanup(consul.Close)
	carol := e.hs.Register(t, "carol", "carol-password-1")
	room := e.alice.CreateRoom(t, false, e.botID, carol.ID)
	carol.JoinRoom(t, room)

	write := func(name, content string) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf(`[nomad]
watch = false
[consul]
address = %q
watch = false
[alerts]
edit_interval = "200ms"
[[alerts.rooms]]
room = %q
[backups]
report_schedule = "@every 4s"
report_room = %q
part_size_mib = 5
%s%s[[backups.targets]]
name = "consul"
kind = "consul"
[s3]
endpoint = %q
bucket = "backups"
access_key_id_file = %q
secret_access_key_file = %q
`, consul.URL, room, room, pgTargetTOML("main-db", "@every 3s", "shop", pg, write("pg-password", pg.Password)),
		pgTargetTOML("shop-db", "", "shop", pg, filepath.Join(e.dir, "pg-password")),
		s3.URL, write("s3-key", s3.AccessKey), write("s3-secret", s3.SecretKey))
	if err := os.WriteFile(e.config, append(cfg, extra...), 0o600); err != nil {
		t.Fatal(err)
	}
	bot, _ := e.start(t)
	e.alice.WaitForJoin(t, room, e.botID, 30*time.Second)
	s3c := s3.Client(t)
	manifests := func(target string) []string {
		var out []string
		for o := range s3c.ListObjects(t.Context(), "backups", minio.ListObjectsOptions{Prefix: "vigie/" + target + "/", Recursive: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			if strings.HasSuffix(o.Key, ".manifest.json") {
				out = append(out, o.Key)
			}
		}
		return out
	}

	// A scheduled backup lands; the report, scheduled and asked for, lists it.
	deadline := time.Now().Add(30 * time.Second)
	for len(manifests("main-db")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled backup landed\n%s", bot.logTail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.waitBot(t, room, 20*time.Second, "Backups:", "main-db", "✅ ok")
	ev := e.alice.SendText(t, room, "!vigie backup report")
	report := e.replyWith(t, room.String(), ev.String(), "main-db")
	if !strings.Contains(report, "shop-db") || !strings.Contains(report, "never") {
		t.Fatalf("report:\n%s", report)
	}

	// A restore of shop-db, asked by alice, approved by carol (two persons).
	ev = e.alice.SendText(t, room, "!vigie backup shop-db")
	e.waitBot(t, room, 30*time.Second, "✅ shop-db backed up: shop-db-")
	ev = e.alice.SendText(t, room, "!vigie restore shop-db into=shop_copy")
	preview := e.replyWith(t, room.String(), ev.String(), "Two-person rule")
	if !strings.Contains(preview, "into the new database shop_copy") || !strings.Contains(preview, "2 tables, 3300 rows") {
		t.Fatalf("restore preview:\n%s", preview)
	}
	code := confirmCode.FindStringSubmatch(preview)[1]
	e.replyWith(t, room.String(), e.alice.SendText(t, room, "!vigie confirm "+code).String(), "needs a second person")
	carol.SendText(t, room, "!vigie confirm "+code)
	e.waitBot(t, room, 60*time.Second, "restored into shop_copy", "2 tables, 3300 rows, as dumped")
	if got, want := pgRows(t, pg, "shop_copy"), pgRows(t, pg, "shop"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored %v, dumped %v", got, want)
	}

	// SIGKILL in the middle of a Consul snapshot upload.
	state := make([]byte, 24<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range state { // what zstd cannot shrink: parts fill as fast as it comes
		state[i] = byte(rng.Uint32())
	}
	consul.SetSnapshot(fakeconsul.BuildSnapshot(99, state))
	consul.ThrottleSnapshot(256<<10, 50*time.Millisecond)
	e.alice.SendText(t, room, "!vigie backup consul")
	for deadline := time.Now().Add(30 * time.Second); ; {
		var pending []string
		for u := range s3c.ListIncompleteUploads(t.Context(), "backups", "vigie/consul/", true) {
			pending = append(pending, u.Key)
		}
		if len(pending) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consul upload never started\n%s", bot.logTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	bot.kill()
	consul.ThrottleSnapshot(0, 0)
	bot, _ = e.start(t)
	e.waitBot(t, room, 30*time.Second, "backup of consul interrupted")
	for u := range s3c.ListIncompleteUploads(t.Context(), "backups", "vigie/", true) {
		t.Fatalf("pending upload after the restart: %s", u.Key)
	}
	if m := manifests("consul"); len(m) != 0 {
		t.Fatalf("manifests of a killed run: %v", m)
	}

	// S3 stops: the next scheduled backup fails, an incident says so; S3
	// back, the next good run resolves it.
	s3.Stop()
	e.waitBot(t, room, 60*time.Second, "backup of main-db failed", "S3 at "+s3.URL)
	s3.Restart(t)
	e.waitBot(t, room, 60*time.Second, "RESOLVED · backup of main-db failed")
	bot.stop(t)
	var transcript []string
	for _, m := range e.alice.Messages(t, room) {
		if body := m.Content.AsMessage().Body; m.Sender == e.botID && !strings.Contains(body, "Backups:") {
			transcript = append(transcript, body)
		}
	}
	t.Logf("the room, reports left out:\n%s", strings.Join(transcript, "\n---\n"))
}
