package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const backupsTOML = `[backups]
report_schedule = "0 8 * * *"
report_room = "!ops:example.org"

[[backups.targets]]
name = "main-db"
kind = "postgres"
schedule = "30 3 * * *"
databases = ["app"]
keep_last = 0
[backups.targets.postgres]
host = "stolon-proxy.service.consul"
user = "vigie_backup"
password_file = "pg-password"
[backups.targets.verify]
host = "127.0.0.1"
port = 5433
user = "postgres"

[[backups.targets]]
name = "consul"
kind = "consul"
schedule = "CRON_TZ=Europe/Paris 0 */6 * * *"
token_file = "consul-token"

[[backups.targets]]
name = "nomad"
kind = "nomad"
max_age = "0s"

[s3]
endpoint = "https://garage.example.org:3900"
bucket = "backups"
access_key_id_file = "key-id"
`

func TestBackupsSettings(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/pg-password", "pg-secret\n")
	writeFile(t, dir+"/consul-token", "management-token\n")
	writeFile(t, dir+"/key-id", "GKexample\n")
	c, err := load(writeConfig(t, dir, backupsTOML), env("AWS_SECRET_ACCESS_KEY", "s3-secret", "VIGIE_BACKUP_MAIN_DB_VERIFY_PASSWORD", "verify-secret"))
	if err != nil {
		t.Fatal(err)
	}
	db, consul, nomad := c.Backups.Targets[0], c.Backups.Targets[1], c.Backups.Targets[2]
	if db.KeepLast != 0 || db.KeepDaily != 7 || db.KeepWeekly != 4 || db.KeepMonthly != 6 {
		t.Errorf("retention: an explicit 0 stays, the rest default: %+v", db)
	}
	if db.Postgres.Port != 5432 || db.Postgres.SSLMode != "prefer" || db.Verify.Port != 5433 || db.PgDumpPath != "pg_dump" {
		t.Errorf("postgres defaults: %+v %+v", db.Postgres, db.Verify)
	}
	if db.Postgres.Password.Reveal() != "pg-secret" || db.Verify.Password.Reveal() != "verify-secret" ||
		db.Verify.Password.Source != "env VIGIE_BACKUP_MAIN_DB_VERIFY_PASSWORD" {
		t.Errorf("passwords: %+v %+v", db.Postgres.Password, db.Verify.Password)
	}
	if consul.Token.Reveal() != "management-token" || c.S3.AccessKeyID.Reveal() != "GKexample" || c.S3.SecretAccessKey.Reveal() != "s3-secret" {
		t.Errorf("secrets: %v %v %v", consul.Token.Source, c.S3.AccessKeyID.Source, c.S3.SecretAccessKey.Source)
	}
	// max_age: 1.5 times the schedule's longest gap, unless set.
	if db.MaxAge.Duration != 36*time.Hour || consul.MaxAge.Duration != 9*time.Hour || nomad.MaxAge.Duration != 0 {
		t.Errorf("max_age: %s %s %s", db.MaxAge, consul.MaxAge, nomad.MaxAge)
	}
	if c.S3.Region != "garage" || c.S3.Prefix != "vigie" || c.Backups.PartSizeMiB != 16 || c.Backups.ParallelParts != 2 {
		t.Errorf("s3 and part defaults: %+v %+v", c.S3, c.Backups)
	}
	runs, err := NextRuns(consul.Schedule, time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC), 3)
	if err != nil || runs[0] != time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC) || runs[2].Sub(runs[0]) != 12*time.Hour {
		t.Errorf("next runs %v %v", runs, err)
	}
}

func TestBackupsProblems(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, `[backups]
report_schedule = "8 o'clock"
part_size_mib = 2

[[backups.targets]]
name = "report"
kind = "postgres"
schedule = "61 3 * * *"
keep_last = -1
token_file = "x"

[[backups.targets]]
name = "Main DB"
kind = "mysql"
databases = ["app"]

[[backups.targets]]
name = "db"
kind = "postgres"
databases = ["*", "app"]
keep_last = 0
keep_daily = 0
keep_weekly = 0
keep_monthly = 0
[backups.targets.postgres]
host = "h"
user = "u"
sslmode = "sometimes"

[[backups.targets]]
name = "db"
kind = "consul"
databases = ["x"]
`)
	_, err := load(path, env())
	got := fmt.Sprint(err)
	for _, want := range []string{
		path + `:2: backups.report_schedule: invalid schedule "8 o'clock"`,
		path + ":2: backups.report_schedule: needs backups.report_room",
		path + ":3: backups.part_size_mib: must be between 5 and 5120",
		path + `:6: backups.targets[0].name: "report" is taken by the "backup report" command`,
		path + `:8: backups.targets[0].schedule: invalid schedule "61 3 * * *"`,
		path + ":9: backups.targets[0].keep_last: must not be negative, got -1",
		path + ":10: backups.targets[0].token_file: only applies to consul and nomad targets",
		"backups.targets[0].databases: must list the databases to dump",
		"backups.targets[0].postgres.host: must be set",
		path + `:13: backups.targets[1].name: must be lowercase letters, digits, '-' or '_' (it is part of object keys), got "Main DB"`,
		path + ":14: backups.targets[1].kind:",
		path + `:20: backups.targets[2].databases: "*" already means every database`,
		"backups.targets[2].keep_last: keeps nothing",
		path + ":28: backups.targets[2].postgres.sslmode:",
		path + `:31: backups.targets[3].name: "db" is already the name of backups.targets[2]`,
		path + ":33: backups.targets[3].databases: only applies to postgres targets, this one is consul",
		"s3.endpoint: must be set when backups are configured",
		"s3.bucket: must be set when backups are configured",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func TestBackupSummaryShowsNextRuns(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/pg-password", "pg-secret\n")
	writeFile(t, dir+"/consul-token", "management-token\n")
	writeFile(t, dir+"/key-id", "GKexample\n")
	c, err := load(writeConfig(t, dir, backupsTOML), env("AWS_SECRET_ACCESS_KEY", "s3-secret"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.BackupSummary(time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC))
	for _, want := range []string{
		`backups         "30 3 * * *", next 2026-12-01 03:30 UTC, 2026-12-02 03:30 UTC, 2026-12-03 03:30 UTC`,
		`backups         "CRON_TZ=Europe/Paris 0 */6 * * *", next 2026-11-30 05:00 UTC, 2026-11-30 11:00 UTC, 2026-11-30 17:00 UTC`,
		"verifications   on demand only",
		"backup main-db    postgres, keep last 0, daily 7, weekly 4, monthly 6, stale after 36h",
		"backup nomad      nomad, keep last 3, daily 7, weekly 4, monthly 6, never stale",
		"key from file " + dir + "/key-id",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "GKexample") || strings.Contains(s, "s3-secret") {
		t.Errorf("summary shows a secret:\n%s", s)
	}
}
