package backups

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/internal/pgserver"
	"github.com/vigie/vigie/internal/testenv"
	"github.com/vigie/vigie/store"
)

// seedSQL is a small but varied dataset: several schemas, a role owning a
// table, a foreign key, a partitioned table and a view.
const seedSQL = `
CREATE ROLE app_owner LOGIN PASSWORD 'owner-secret';
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
INSERT INTO customers (name, email) SELECT 'customer ' || g, 'c' || g || '@example.org' FROM generate_series(1, 500) g;
ALTER TABLE customers OWNER TO app_owner;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers (id), total numeric(10, 2), placed timestamptz DEFAULT '2026-11-01');
INSERT INTO orders (customer_id, total) SELECT 1 + g % 500, g * 1.5 FROM generate_series(1, 3000) g;
CREATE SCHEMA audit;
CREATE TABLE audit.events (id int, payload jsonb);
INSERT INTO audit.events SELECT g, jsonb_build_object('n', g) FROM generate_series(1, 200) g;
CREATE TABLE measurements (id int, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE measurements_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO measurements SELECT g, DATE '2025-06-01' + g FROM generate_series(1, 300) g;
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
`

// seededRows is what seedSQL puts in each table a dump holds.
var seededRows = map[string]int64{"audit.events": 200, "public.customers": 500, "public.measurements_2025": 213,
	"public.measurements_2026": 87, "public.orders": 3000}

// env is a service against a real PostgreSQL and a real S3.
type env struct {
	pg    *testenv.Postgres
	s3    *testenv.S3
	st    *store.Store
	clock *clock.Manual
	svc   *Service
	srv   pgserver.Server
	tools Tools
}

const bucket = "backups"

// newEnv starts PostgreSQL (database "app", seeded) and S3 (bucket
// "backups") and builds a service of targets; configure adjusts them.
func newEnv(t *testing.T, configure func(e *env, targets []Target) []Target) *env {
	t.Helper()
	e := &env{pg: testenv.StartPostgres(t), s3: testenv.StartS3(t), clock: clock.NewManual(time.Date(2026, 11, 30, 3, 30, 0, 0, time.UTC))}
	e.s3.CreateBucket(t, bucket)
	e.pg.Exec(t, "postgres", "CREATE DATABASE app")
	e.pg.Exec(t, "app", seedSQL)
	e.srv = pgserver.Server{Host: e.pg.Host, Port: e.pg.Port, User: e.pg.User, Password: e.pg.Password, SSLMode: "disable"}
	e.tools = Tools{PgDump: filepath.Join(e.pg.BinDir, "pg_dump")}
	var err error
	if e.st, err = store.Open(t.Context(), t.TempDir(), e.clock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	verify := e.srv
	targets := []Target{{Name: "main-db", Kind: KindPostgres, Databases: []string{"app"}, Tools: e.tools, Postgres: e.srv, Verify: &verify,
		MaxAge: 36 * time.Hour, Retention: Retention{Last: 3, Daily: 7, Weekly: 4, Monthly: 6}}}
	if configure != nil {
		targets = configure(e, targets)
	}
	storage, err := NewStorage(e.storageConfig(e.s3.SecretKey))
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = New(Config{Targets: targets, Storage: storage, Prefix: "vigie", WorkDir: filepath.Join(t.TempDir(), "work"),
		Version: "test", Timeout: 2 * time.Minute}, e.st, e.clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) storageConfig(secret string) StorageConfig {
	return StorageConfig{Endpoint: e.s3.URL, Region: e.s3.Region, Bucket: bucket, AccessKeyID: e.s3.AccessKey, SecretAccessKey: secret,
		PartSize: 5 << 20, ParallelParts: 2}
}

// pending lists the multipart uploads in progress in the bucket.
func (e *env) pending(t *testing.T) []string {
	t.Helper()
	keys, err := e.svc.cfg.Storage.pendingUploads(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// rows counts a table's rows in a database.
func (e *env) rows(t *testing.T, database string) map[string]int64 {
	t.Helper()
	conn, err := e.srv.Connect(t.Context(), database)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	counts, err := countRows(t.Context(), tx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, c := range counts {
		out[c.Schema+"."+c.Name] = c.Rows
	}
	return out
}

// cluster is a Consul or Nomad fake as a snapshot source.
func cluster(name, url string) Cluster {
	return Cluster{Name: name, Address: url, Client: http.DefaultClient, Header: http.Header{}}
}

func TestMain(m *testing.M) {
	progressEvery = 20 * time.Millisecond // tests follow runs closely
	os.Exit(m.Run())
}
