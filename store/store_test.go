package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie/vigie/clock"
)

func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(t.Context(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func TestOpenMigratesOnceAndIsPrivate(t *testing.T) {
	s, dir := openTest(t)
	ctx := t.Context()
	all, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.SchemaVersion(ctx)
	if err != nil || v != len(all) {
		t.Fatalf("schema version %d, %v; want %d", v, err, len(all))
	}
	if err := s.SetValue(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Reopening must not re-run migrations (they would fail on existing tables) and keeps data.
	s2, err := Open(ctx, dir, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	if got, ok, err := s2.Value(ctx, "k"); err != nil || !ok || got != "v" {
		t.Fatalf("after reopen: %q %v %v", got, ok, err)
	}
	if err := s2.DeleteValue(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s2.Value(ctx, "k"); err != nil || ok {
		t.Fatalf("after delete: %q %v %v", got, ok, err)
	}
	if err := s2.DeleteValue(ctx, "never-set"); err != nil {
		t.Fatalf("deleting a key never set: %v", err)
	}
	for _, p := range []string{dir, filepath.Join(dir, FileName)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is readable by others: %v", p, fi.Mode())
		}
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	s, dir := openTest(t)
	if _, err := s.db.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(t.Context(), dir, nil)
	if err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("want refusal of newer schema, got %v", err)
	}
}

func TestValuesAndCursors(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if _, ok, err := s.Value(ctx, "missing"); ok || err != nil {
		t.Fatalf("missing key: ok=%v err=%v", ok, err)
	}
	for _, v := range []string{"a", "b"} {
		if err := s.SetValue(ctx, "k", v); err != nil {
			t.Fatal(err)
		}
	}
	if v, _, _ := s.Value(ctx, "k"); v != "b" {
		t.Fatalf("value %q, want b", v)
	}

	if _, _, ok, err := s.Cursor(ctx, "nomad"); ok || err != nil {
		t.Fatalf("fresh cursor: ok=%v err=%v", ok, err)
	}
	big := uint64(1) << 62
	err := s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.Enqueue(ctx, OutMessage{Transport: "matrix", Room: "!r", Plain: "alert", HTML: "alert"}); err != nil {
			return err
		}
		return tx.SetCursor(ctx, "nomad", big, 2)
	})
	if err != nil {
		t.Fatal(err)
	}
	if p, skip, ok, err := s.Cursor(ctx, "nomad"); !ok || err != nil || p != big || skip != 2 {
		t.Fatalf("cursor %d/%d %v %v", p, skip, ok, err)
	}
	// A failing transaction keeps neither the messages nor the cursor.
	boom := errors.New("boom")
	err = s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.Enqueue(ctx, OutMessage{Transport: "matrix", Room: "!r", Plain: "lost", HTML: "lost"}); err != nil {
			return err
		}
		if err := tx.SetCursor(ctx, "nomad", big+1, 0); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx error %v", err)
	}
	if p, _, _, _ := s.Cursor(ctx, "nomad"); p != big {
		t.Fatalf("cursor moved by a rolled back transaction: %d", p)
	}
	if c, _ := s.OutboxCounts(ctx, "matrix"); c[StatePending] != 1 {
		t.Fatalf("rolled back message kept: %v", c)
	}
}

func TestOutboxLifecycle(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	ids, err := s.Enqueue(ctx,
		OutMessage{Transport: "matrix", Room: "!a", Plain: "one", HTML: "<b>one</b>", ReplyTo: "$cmd"},
		OutMessage{Transport: "matrix", Room: "!b", Plain: "two", HTML: "two"},
		OutMessage{Transport: "console", Room: "console", Plain: "three", HTML: "three"},
	)
	if err != nil || len(ids) != 3 {
		t.Fatalf("enqueue: %v %v", ids, err)
	}
	edit, err := s.Enqueue(ctx, OutMessage{Transport: "matrix", Room: "!a", Plain: "one!", HTML: "one!", EditOf: ids[0], ThreadRoot: ids[0]})
	if err != nil {
		t.Fatal(err)
	}
	pending, err := s.Pending(ctx, "matrix", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 3 || pending[0].ID != ids[0] || pending[1].ID != ids[1] || pending[2].ID != edit[0] {
		t.Fatalf("pending order wrong: %+v", pending)
	}
	first := pending[0]
	if first.ReplyTo != "$cmd" || first.HTML != "<b>one</b>" || first.State != StatePending || !strings.HasPrefix(first.TxnID, "vigie.") {
		t.Fatalf("round trip lost fields: %+v", first)
	}
	if pending[2].EditOf != ids[0] || pending[2].ThreadRoot != ids[0] {
		t.Fatalf("relations lost: %+v", pending[2])
	}
	heads, err := s.PendingHeads(ctx, "matrix")
	if err != nil || len(heads) != 2 || heads[0].ID != ids[0] || heads[1].ID != ids[1] {
		t.Fatalf("heads: %+v %v", heads, err)
	}
	txns := map[string]bool{}
	for _, m := range pending {
		if txns[m.TxnID] {
			t.Fatalf("duplicate txn id %s", m.TxnID)
		}
		txns[m.TxnID] = true
	}

	if err := s.StartAttempt(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordFailure(ctx, ids[0], "502 bad gateway", false); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Message(ctx, ids[0]); m.Attempts != 1 || m.AttemptedAt.IsZero() || m.LastError != "502 bad gateway" {
		t.Fatalf("after a failed attempt of unknown outcome: %+v", m)
	}
	if err := s.RecordFailure(ctx, ids[0], "M_LIMIT_EXCEEDED", true); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Message(ctx, ids[0]); m.Attempts != 1 || !m.AttemptedAt.IsZero() {
		t.Fatalf("after a refused attempt: %+v", m)
	}
	if err := s.MarkSent(ctx, ids[0], "$ev1"); err != nil {
		t.Fatal(err)
	}
	// Marking again with another event means two senders raced: refused.
	if err := s.MarkSent(ctx, ids[0], "$ev2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second MarkSent: %v", err)
	}
	// With the same event, the echo got there first: fine.
	if err := s.MarkSent(ctx, ids[0], "$ev1"); err != nil {
		t.Fatalf("MarkSent after the echo: %v", err)
	}
	m0, _ := s.Message(ctx, ids[0])
	if ok, err := s.MarkSentByTxn(ctx, "matrix", m0.TxnID, "$other"); ok || err != nil {
		t.Fatalf("echo of a sent message changed it: %v %v", ok, err)
	}
	m, err := s.Message(ctx, ids[0])
	if err != nil || m.State != StateSent || m.RemoteID != "$ev1" || m.Attempts != 1 || m.LastError != "" {
		t.Fatalf("after send: %+v %v", m, err)
	}
	m2, _ := s.Message(ctx, ids[2])
	if ok, err := s.MarkSentByTxn(ctx, "matrix", m2.TxnID, "$x"); ok || err != nil {
		t.Fatalf("echo matched across transports: %v %v", ok, err)
	}
	if err := s.MarkFailed(ctx, ids[1], "M_FORBIDDEN"); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Message(ctx, ids[1]); m.State != StateFailed || m.LastError != "M_FORBIDDEN" {
		t.Fatalf("after fail: %+v", m)
	}
	if _, err := s.Message(ctx, 9999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing message: %v", err)
	}
	if pending, _ := s.Pending(ctx, "matrix", 10); len(pending) != 1 || pending[0].ID != edit[0] {
		t.Fatalf("pending after delivery: %+v", pending)
	}
	counts, err := s.OutboxCounts(ctx, "matrix")
	if err != nil || counts[StatePending] != 1 || counts[StateSent] != 1 || counts[StateFailed] != 1 {
		t.Fatalf("counts %v %v", counts, err)
	}
}

func TestEnqueueIsAtomic(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	// The second message edits a row that does not exist: the foreign key fails and nothing is kept.
	_, err := s.Enqueue(ctx,
		OutMessage{Transport: "matrix", Room: "!a", Plain: "ok", HTML: "ok"},
		OutMessage{Transport: "matrix", Room: "!a", Plain: "bad", HTML: "bad", EditOf: 4242},
	)
	if err == nil {
		t.Fatal("enqueue with dangling edit_of succeeded")
	}
	if p, _ := s.Pending(ctx, "matrix", 10); len(p) != 0 {
		t.Fatalf("partial enqueue kept %d rows", len(p))
	}
}

func TestMarkSeen(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	first, err := s.MarkSeen(ctx, "$e")
	if err != nil || !first {
		t.Fatalf("first: %v %v", first, err)
	}
	if again, _ := s.MarkSeen(ctx, "$e"); again {
		t.Fatal("second MarkSeen reported first")
	}
	n, err := s.ForgetSeenBefore(ctx, time.Now().Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("forget: %d %v", n, err)
	}
	if first, _ := s.MarkSeen(ctx, "$e"); !first {
		t.Fatal("forgotten event still seen")
	}
}

func TestAudit(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	for _, o := range []string{"ok", "denied"} {
		if err := s.Audit(ctx, AuditRecord{Actor: "@a:x", Room: "!r", EventID: "$e", Command: "ping", Access: "read", Outcome: o,
			Principal: "uid=a,dc=x", Duration: 1500 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Audit(ctx, AuditRecord{Actor: "@b:x", Command: "deploy", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	log, err := s.AuditLog(ctx, AuditFilter{Limit: 10, Actor: "@a:x"})
	if err != nil || len(log) != 2 || log[0].Outcome != "denied" || log[1].Outcome != "ok" || log[0].At.IsZero() ||
		log[0].Principal != "uid=a,dc=x" || log[0].Duration != 1500*time.Millisecond {
		t.Fatalf("audit log: %+v %v", log, err)
	}
	if log, _ := s.AuditLog(ctx, AuditFilter{Limit: 10, Command: "deploy"}); len(log) != 1 || log[0].Actor != "@b:x" {
		t.Fatalf("by command: %+v", log)
	}
	if log, _ := s.AuditLog(ctx, AuditFilter{Limit: 1}); len(log) != 1 || log[0].Command != "deploy" {
		t.Fatalf("limit: %+v", log)
	}
}

// Two processes (vigie run and vigie console) may share a data directory.
func TestTwoStoresShareOneDatabase(t *testing.T) {
	s1, dir := openTest(t)
	s2, err := Open(t.Context(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, s := range []*Store{s1, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := s.Enqueue(ctx, OutMessage{Transport: "matrix", Room: "!r", Plain: "x", HTML: "x"}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if p, _ := s1.Pending(ctx, "matrix", 1000); len(p) != 100 {
		t.Fatalf("want 100 rows from two writers, got %d", len(p))
	}
}

// Everything the store stamps comes from the clock it was given, read once
// per transaction: a fact written in a transaction is as old as the
// transaction says, whatever the wall clock.
func TestStoreTimeIsTheInjectedClock(t *testing.T) {
	at := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	clk := clock.NewManual(at)
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "data"), clk)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	err = s.InTx(ctx, func(tx *Tx) error {
		if !tx.Now().Equal(at) {
			t.Errorf("transaction time %v, want %v", tx.Now(), at)
		}
		clk.Advance(time.Hour) // the transaction keeps its one reading
		if !tx.Now().Equal(at) {
			t.Errorf("transaction time moved to %v", tx.Now())
		}
		return tx.SetFact(ctx, "k", "a", "v")
	})
	if err != nil {
		t.Fatal(err)
	}
	forgetBefore := func(when time.Time) (kept bool) {
		t.Helper()
		err := s.InTx(ctx, func(tx *Tx) error {
			if err := tx.ForgetFactsBefore(ctx, "k", when); err != nil {
				return err
			}
			_, kept, err = tx.Fact(ctx, "k", "a")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return kept
	}
	if !forgetBefore(at) {
		t.Fatal("a fact stamped at the transaction's time was older than it")
	}
	if forgetBefore(at.Add(time.Millisecond)) {
		t.Fatal("the fact was not stamped with the injected clock")
	}
	if err := s.Audit(ctx, AuditRecord{Actor: "@a:x", Command: "ping"}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.AuditLog(ctx, AuditFilter{Limit: 1})
	if err != nil || len(recs) != 1 || !recs[0].At.Equal(at.Add(time.Hour)) {
		t.Fatalf("audit record %+v, %v: want the clock's time %v", recs, err, at.Add(time.Hour))
	}
}

// Reads outside transactions do not wait for the writer: they see what was
// committed, at once, while a write transaction is under way, and none of
// what it has not committed yet.
func TestReadsRunBesideTheWriter(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	ids, err := s.Enqueue(ctx, OutMessage{Transport: "matrix", Room: "!a", Plain: "committed", HTML: "c"})
	if err != nil {
		t.Fatal(err)
	}
	inTx, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.InTx(ctx, func(tx *Tx) error {
			if _, err := tx.Enqueue(ctx, OutMessage{Transport: "matrix", Room: "!b", Plain: "uncommitted", HTML: "u"}); err != nil {
				return err
			}
			close(inTx)
			<-release
			return nil
		})
	}()
	<-inTx
	readCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	heads, err := s.PendingHeads(readCtx, "matrix")
	cancel()
	if err != nil || len(heads) != 1 || heads[0].ID != ids[0] {
		t.Errorf("heads during a write transaction: %+v, %v; want message %d alone", heads, err, ids[0])
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Committed: the next read sees it.
	if heads, err := s.PendingHeads(ctx, "matrix"); err != nil || len(heads) != 2 {
		t.Fatalf("heads after commit: %+v, %v", heads, err)
	}
	// A write the writer has returned from is seen by the next read.
	if err := s.MarkSent(ctx, ids[0], "$x"); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Message(ctx, ids[0]); err != nil || m.State != StateSent {
		t.Fatalf("after MarkSent: %+v, %v", m, err)
	}
	// The readers cannot write.
	if _, err := exec(ctx, s.r, `DELETE FROM outbox`); err == nil {
		t.Fatal("a reader connection wrote")
	}
}

// The sender looks for room heads after every commit that queued messages:
// that must not read the table nor sort.
func TestPendingHeadsUsesItsIndex(t *testing.T) {
	s, _ := openTest(t)
	rows, err := s.db.QueryContext(t.Context(), `EXPLAIN QUERY PLAN `+pendingHeads, "matrix")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "COVERING INDEX outbox_pending_heads") || strings.Contains(text, "TEMP B-TREE") || strings.Contains(text, "SCAN") {
		t.Fatalf("plan of PendingHeads:\n%s", text)
	}
}

// Statements are prepared once: a transaction meeting a query for the first
// time leaves it prepared for the next ones, and IncidentsInState, whatever
// its states, is one statement.
func TestStatementsArePreparedOnce(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	for range 3 {
		err := s.InTx(ctx, func(tx *Tx) error {
			for _, states := range [][]string{{IncidentOpen}, {IncidentOpen, IncidentHeld}, {IncidentHeld}} {
				if _, err := tx.IncidentsInState(ctx, states...); err != nil {
					return err
				}
			}
			return tx.SetFact(ctx, "k", "a", "v")
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	err := s.InTx(ctx, func(tx *Tx) error {
		_, err := tx.IncidentsInState(ctx, IncidentResolved)
		return err
	})
	if err == nil {
		t.Error("resolved incidents listed: a scan of every incident ever recorded")
	}
	plan, err := queryAll(ctx, s.w, `EXPLAIN QUERY PLAN SELECT id FROM incidents INDEXED BY incidents_live_key WHERE state IN ('held', 'open') AND state IN (SELECT value FROM json_each(?)) ORDER BY id`,
		func(r scanner) (string, error) {
			var a, b, c int
			var d string
			err := r.Scan(&a, &b, &c, &d)
			return d, err
		}, `["held"]`)
	if err != nil || !strings.Contains(strings.Join(plan, "\n"), "incidents_live_key") {
		t.Errorf("IncidentsInState's plan %q, %v: not the index of live incidents", plan, err)
	}
	s.w.mu.Lock()
	n := len(s.w.m)
	s.w.mu.Unlock()
	if n != 4 { // PRAGMA user_version, IncidentsInState, SetFact, the plan
		t.Fatalf("%d statements cached, want 3", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pending(ctx, "matrix", 1); err == nil {
		t.Fatal("a closed store answered")
	}
}

// LiveIncidentsWithPrefix finds the live incidents under a prefix, by a
// range of the index of live keys.
func TestLiveIncidentsWithPrefix(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	keys := []string{"alloc/ns/job", "alloc/ns/job/a", "alloc/ns/job/b", "alloc/ns/jobs/a", "alloc/ns/joc", "alloc/ns/job/\xff", "\xff\xff", "\xff\xffa", "check/x"}
	err := s.InTx(ctx, func(tx *Tx) error {
		for _, k := range keys {
			if err := tx.SaveIncident(ctx, &Incident{Key: k, Rule: "r", State: IncidentOpen, Labels: "{}"}); err != nil {
				return err
			}
		}
		// resolved: not live
		return tx.SaveIncident(ctx, &Incident{Key: "alloc/ns/job/c", Rule: "r", State: IncidentResolved, Labels: "{}"})
	})
	if err != nil {
		t.Fatal(err)
	}
	for prefix, want := range map[string][]string{
		"alloc/ns/job/": {"alloc/ns/job/a", "alloc/ns/job/b", "alloc/ns/job/\xff"},
		"alloc/ns/job":  {"alloc/ns/job", "alloc/ns/job/a", "alloc/ns/job/b", "alloc/ns/jobs/a", "alloc/ns/job/\xff"},
		"\xff\xff":      {"\xff\xff", "\xff\xffa"},
		"":              keys,
		"nothing/":      nil,
	} {
		var got []string
		err := s.InTx(ctx, func(tx *Tx) error {
			live, err := tx.LiveIncidentsWithPrefix(ctx, prefix)
			for _, in := range live {
				got = append(got, in.Key)
			}
			return err
		})
		if err != nil || strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("prefix %q: %q, %v; want %q", prefix, got, err, want)
		}
	}
	plan, err := queryAll(ctx, s.w, `EXPLAIN QUERY PLAN SELECT id FROM incidents WHERE state IN ('held', 'open') AND key >= ? AND key < ? ORDER BY id`,
		func(r scanner) (string, error) {
			var a, b, c int
			var d string
			err := r.Scan(&a, &b, &c, &d)
			return d, err
		}, "a", "b")
	if err != nil || !strings.Contains(strings.Join(plan, "\n"), "USING INDEX incidents_live_key (key>? AND key<?)") {
		t.Fatalf("plan %q, %v", plan, err)
	}
}

// AddFacts adds facts, keeping those already remembered, in statements
// of a power of two rows.
func TestAddFacts(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	facts := []Fact{{"alloc", "a1", "default/other"}, {"alloc", "a2", `default/"quoted"`}, {"drain", "a1", "1"}, {"alloc", "a2", "default/again"}}
	want := map[[2]string]string{{"alloc", "a1"}: "default/web", {"alloc", "a2"}: `default/"quoted"`, {"drain", "a1"}: "1"}
	for i := range 100 { // 104 in all: statements of 64, 32 and 8 rows
		k := fmt.Sprint("b", i)
		facts = append(facts, Fact{"alloc", k, "default/b"})
		want[[2]string{"alloc", k}] = "default/b"
	}
	err := s.InTx(ctx, func(tx *Tx) error {
		if err := tx.SetFact(ctx, "alloc", "a1", "default/web"); err != nil {
			return err
		}
		return tx.AddFacts(ctx, facts)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, log := range []int{6, 5, 3} {
		if s.w.cached(addFactsStatements[log]) == nil {
			t.Errorf("no statement of %d rows", 1<<log)
		}
	}
	err = s.InTx(ctx, func(tx *Tx) error {
		var n int
		if err := queryRow(ctx, tx, `SELECT COUNT(*) FROM facts`).Scan(&n); err != nil || n != len(want) {
			t.Errorf("%d facts, %v; want %d", n, err, len(want))
		}
		for k, v := range want {
			got, ok, err := tx.Fact(ctx, k[0], k[1])
			if err != nil || !ok || got != v {
				t.Errorf("fact %v: %q, %v, %v; want %q", k, got, ok, err, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// An incident is read back as saved, every field of it; SaveIncidentOver
// writes only the columns where the incident differs from its row as
// given, and all of them when that row is not known.
func TestSaveIncidentOver(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	at := func(sec int64) time.Time { return time.Unix(1_800_000_000+sec, 0) }
	first := Incident{Key: "alloc/ns/job/g", Rule: "alloc-failed", Severity: 2, State: IncidentHeld, Title: "t", Reason: "r",
		Labels: `{"job":"job"}`, Events: 3, Changes: []int64{1, 2}, Flapping: true, HoldReason: "h", OpenedAt: at(1), UpdatedAt: at(2),
		ResolvedAt: at(3), Resolution: "res", AckedBy: "@a", SilencedBy: "@s", EditDueAt: at(4), LastEditAt: at(5), RemindedAt: at(6),
		Reminders: 7, ThreadSent: 8, ThreadWindow: at(9), ThreadSkipped: 10, Occurrences: "o1\no2", SettleAt: at(11),
		SettleReason: "sr", HoldUntil: at(12), Releases: "rel"}
	second := Incident{Key: "alloc/ns/job/h", Rule: "alloc-lost", Severity: 1, State: IncidentOpen, Title: "t2", Reason: "r2",
		Labels: "{}", Events: 4, Changes: []int64{3}, OpenedAt: at(21), UpdatedAt: at(22), LastEditAt: at(25), RemindedAt: at(26),
		ThreadWindow: at(29), Occurrences: "o3"}
	save := func(in, stored *Incident) (got Incident) {
		t.Helper()
		err := s.InTx(ctx, func(tx *Tx) error {
			if err := tx.SaveIncidentOver(ctx, in, stored); err != nil {
				return err
			}
			var err error
			got, _, err = tx.Incident(ctx, in.ID)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	same := func(what string, got, want Incident) {
		t.Helper()
		if g, w := fmt.Sprintf("%+v", got), fmt.Sprintf("%+v", want); g != w {
			t.Errorf("%s:\n got %s\nwant %s", what, g, w)
		}
	}
	in := first
	same("inserted", save(&in, nil), in)
	stored := in
	// Every column changes.
	in = second
	in.ID = stored.ID
	same("every column changed", save(&in, &stored), in)
	// A column changed by hand is left as it is, unless the row is not known.
	if err := s.InTx(ctx, func(tx *Tx) error {
		_, err := exec(ctx, tx, `UPDATE incidents SET title = 'by hand' WHERE id = ?`, in.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stored = in
	in.Reason, in.Events, in.Occurrences = "r3", 5, "o3\no4"
	want := in
	want.Title = "by hand"
	same("reason changed", save(&in, &stored), want)
	stored = in
	same("nothing changed", save(&in, &stored), want)
	same("row not known", save(&in, nil), in)
}
