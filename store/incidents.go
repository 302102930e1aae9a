package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Incident states.
const (
	IncidentHeld     = "held"
	IncidentOpen     = "open"
	IncidentResolved = "resolved"
	IncidentNotice   = "notice"
)

// Incident is one row of the incidents table. The incidents package owns
// its meaning; the store only keeps it.
type Incident struct {
	ID            int64
	Key           string
	Rule          string
	Severity      int
	State         string
	Title         string
	Reason        string
	Labels        string // JSON
	Events        int
	Changes       []int64 // unix ms of recent state changes
	Flapping      bool
	HoldReason    string
	OpenedAt      time.Time
	UpdatedAt     time.Time
	ResolvedAt    time.Time // zero while live
	Resolution    string
	AckedBy       string
	SilencedBy    string
	EditDueAt     time.Time // zero: no edit owed
	LastEditAt    time.Time
	RemindedAt    time.Time
	Reminders     int
	ThreadSent    int
	ThreadWindow  time.Time
	ThreadSkipped int
	Occurrences   string    // keys of the recent occurrences counted, one a line, oldest first
	SettleAt      time.Time // zero: no settling resolution pending
	SettleReason  string
	HoldUntil     time.Time // held: posted then at the latest
	Releases      string    // the hold reason this incident's end releases
}

const incidentColumns = `id, key, rule, severity, state, title, reason, labels, events, changes, flapping, hold_reason,
	opened_at, updated_at, COALESCE(resolved_at, 0), resolution, acked_by, silenced_by, COALESCE(edit_due_at, 0),
	last_edit_at, reminded_at, reminders, thread_sent, thread_window, thread_skipped, occurrences, COALESCE(settle_at, 0),
	settle_reason, COALESCE(hold_until, 0), releases`

func scanIncident(row scanner) (Incident, error) {
	var in Incident
	var changes string
	var opened, updated, resolved, due, lastEdit, reminded, window, settle, holdUntil int64
	err := row.Scan(&in.ID, &in.Key, &in.Rule, &in.Severity, &in.State, &in.Title, &in.Reason, &in.Labels, &in.Events,
		&changes, &in.Flapping, &in.HoldReason, &opened, &updated, &resolved, &in.Resolution, &in.AckedBy, &in.SilencedBy,
		&due, &lastEdit, &reminded, &in.Reminders, &in.ThreadSent, &window, &in.ThreadSkipped, &in.Occurrences, &settle,
		&in.SettleReason, &holdUntil, &in.Releases)
	if err != nil {
		return in, err
	}
	in.Changes = parseTimes(changes)
	in.OpenedAt, in.UpdatedAt, in.ResolvedAt = ms(opened), ms(updated), ms(resolved)
	in.EditDueAt, in.LastEditAt, in.RemindedAt, in.ThreadWindow = ms(due), ms(lastEdit), ms(reminded), ms(window)
	in.SettleAt, in.HoldUntil = ms(settle), ms(holdUntil)
	return in, nil
}

// ms turns unix ms into a time, 0 into the zero time.
func ms(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

// unixMS turns a time into unix ms, the zero time into 0.
func unixMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func nullMS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func parseTimes(s string) []int64 {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		if v, err := strconv.ParseInt(f, 10, 64); err == nil && v > 0 {
			out = append(out, v)
		}
	}
	return out
}

func formatTimes(ts []int64) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = strconv.FormatInt(t, 10)
	}
	return strings.Join(parts, ",")
}

func (t *Tx) incident(ctx context.Context, where string, args ...any) (Incident, bool, error) {
	in, err := scanIncident(queryRow(ctx, t, `SELECT `+incidentColumns+` FROM incidents WHERE `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return in, false, nil
	}
	return in, err == nil, err
}

func (t *Tx) incidents(ctx context.Context, where string, args ...any) ([]Incident, error) {
	return queryAll(ctx, t, `SELECT `+incidentColumns+` FROM incidents WHERE `+where, scanIncident, args...)
}

// LatestIncident returns the newest incident of a key, live or not.
func (t *Tx) LatestIncident(ctx context.Context, key string) (Incident, bool, error) {
	return t.incident(ctx, `key = ? ORDER BY id DESC LIMIT 1`, key)
}

// Incident returns an incident by ID.
func (t *Tx) Incident(ctx context.Context, id int64) (Incident, bool, error) {
	return t.incident(ctx, `id = ?`, id)
}

// LiveIncidentsWithPrefix returns the held and open incidents whose key
// starts with prefix.
func (t *Tx) LiveIncidentsWithPrefix(ctx context.Context, prefix string) ([]Incident, error) {
	// A range of keys: the index of live keys answers it, without reading
	// every incident ever recorded.
	if end, ok := prefixEnd(prefix); ok {
		return t.incidents(ctx, `state IN ('held', 'open') AND key >= ? AND key < ? ORDER BY id`, prefix, end)
	}
	return t.incidents(ctx, `state IN ('held', 'open') AND key >= ? ORDER BY id`, prefix)
}

// IncidentKeysWithPrefix returns the keys under prefix that have an
// incident, live or not: a key not among them has none.
func (t *Tx) IncidentKeysWithPrefix(ctx context.Context, prefix string) (map[string]bool, error) {
	q, args := `SELECT DISTINCT key FROM incidents WHERE key >= ?`, []any{prefix}
	if end, ok := prefixEnd(prefix); ok {
		q, args = q+` AND key < ?`, append(args, end)
	}
	rows, err := query(ctx, t, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	keys := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		keys[k] = true
	}
	return keys, rows.Err()
}

// prefixEnd is the least string above every string that starts with
// prefix (keys compare bytewise); ok is false when there is none.
func prefixEnd(prefix string) (end string, ok bool) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

// IncidentsInState returns the live incidents (held, open) in the given
// states, oldest first.
func (t *Tx) IncidentsInState(ctx context.Context, states ...string) ([]Incident, error) {
	for _, s := range states {
		if s != IncidentHeld && s != IncidentOpen {
			return nil, fmt.Errorf("store: incidents in state %q: only live states are indexed", s)
		}
	}
	// One query text for any number of states, so one prepared statement;
	// the index of live incidents answers it (the planner, left to itself,
	// scans every incident ever recorded).
	list, err := json.Marshal(states)
	if err != nil {
		return nil, err
	}
	return queryAll(ctx, t, `SELECT `+incidentColumns+` FROM incidents INDEXED BY incidents_live_key
		WHERE state IN ('held', 'open') AND state IN (SELECT value FROM json_each(?)) ORDER BY id`, scanIncident, string(list)) // text: a blob would be taken for JSONB
}

// DueIncidents returns incidents owed a debounced edit by now.
func (t *Tx) DueIncidents(ctx context.Context, now time.Time) ([]Incident, error) {
	return t.incidents(ctx, `edit_due_at IS NOT NULL AND edit_due_at <= ? ORDER BY id`, now.UnixMilli())
}

// SettledIncidents returns incidents whose settling resolution is due by now.
func (t *Tx) SettledIncidents(ctx context.Context, now time.Time) ([]Incident, error) {
	return t.incidents(ctx, `settle_at IS NOT NULL AND settle_at <= ? ORDER BY id`, now.UnixMilli())
}

// OverdueHolds returns held incidents whose hold has lasted its maximum by now.
func (t *Tx) OverdueHolds(ctx context.Context, now time.Time) ([]Incident, error) {
	return t.incidents(ctx, `state = 'held' AND hold_until IS NOT NULL AND hold_until <= ? ORDER BY id`, now.UnixMilli())
}

// incidentColumn is a column of the incidents table, after id: how an
// incident's field is stored in it.
type incidentColumn struct {
	name  string
	value func(*Incident) any
	// same reports whether two incidents surely store the same value in
	// it (false at worst writes it again), without formatting either.
	same func(a, b *Incident) bool
}

// field is a column of a field stored as it is.
func field[T comparable](name string, get func(*Incident) T) incidentColumn {
	return incidentColumn{name: name,
		value: func(in *Incident) any { return get(in) },
		same:  func(a, b *Incident) bool { return get(a) == get(b) }}
}

// instant is a column of a time in unix ms, 0 for the zero time.
func instant(name string, get func(*Incident) time.Time) incidentColumn {
	return field(name, func(in *Incident) int64 { return unixMS(get(in)) })
}

// nullInstant is a column of a time in unix ms, NULL for the zero time.
func nullInstant(name string, get func(*Incident) time.Time) incidentColumn {
	return incidentColumn{name: name,
		value: func(in *Incident) any { return nullMS(get(in)) },
		same: func(a, b *Incident) bool {
			ta, tb := get(a), get(b)
			return ta.IsZero() == tb.IsZero() && unixMS(ta) == unixMS(tb)
		}}
}

// incidentTable lists the columns an incident is written to (at most 64:
// a columnSet names them).
var incidentTable = [...]incidentColumn{
	field("key", func(in *Incident) string { return in.Key }),
	field("rule", func(in *Incident) string { return in.Rule }),
	field("severity", func(in *Incident) int { return in.Severity }),
	field("state", func(in *Incident) string { return in.State }),
	field("title", func(in *Incident) string { return in.Title }),
	field("reason", func(in *Incident) string { return in.Reason }),
	field("labels", func(in *Incident) string { return in.Labels }),
	field("events", func(in *Incident) int { return in.Events }),
	{name: "changes",
		value: func(in *Incident) any { return formatTimes(in.Changes) },
		same:  func(a, b *Incident) bool { return slices.Equal(a.Changes, b.Changes) }},
	field("flapping", func(in *Incident) bool { return in.Flapping }),
	field("hold_reason", func(in *Incident) string { return in.HoldReason }),
	instant("opened_at", func(in *Incident) time.Time { return in.OpenedAt }),
	instant("updated_at", func(in *Incident) time.Time { return in.UpdatedAt }),
	nullInstant("resolved_at", func(in *Incident) time.Time { return in.ResolvedAt }),
	field("resolution", func(in *Incident) string { return in.Resolution }),
	field("acked_by", func(in *Incident) string { return in.AckedBy }),
	field("silenced_by", func(in *Incident) string { return in.SilencedBy }),
	nullInstant("edit_due_at", func(in *Incident) time.Time { return in.EditDueAt }),
	instant("last_edit_at", func(in *Incident) time.Time { return in.LastEditAt }),
	instant("reminded_at", func(in *Incident) time.Time { return in.RemindedAt }),
	field("reminders", func(in *Incident) int { return in.Reminders }),
	field("thread_sent", func(in *Incident) int { return in.ThreadSent }),
	instant("thread_window", func(in *Incident) time.Time { return in.ThreadWindow }),
	field("thread_skipped", func(in *Incident) int { return in.ThreadSkipped }),
	field("occurrences", func(in *Incident) string { return in.Occurrences }),
	nullInstant("settle_at", func(in *Incident) time.Time { return in.SettleAt }),
	field("settle_reason", func(in *Incident) string { return in.SettleReason }),
	nullInstant("hold_until", func(in *Incident) time.Time { return in.HoldUntil }),
	field("releases", func(in *Incident) string { return in.Releases }),
}

// columnSet is a set of columns of incidentTable, bit i for column i.
type columnSet uint64

const allColumns = columnSet(1)<<len(incidentTable) - 1

// changedColumns are the columns where in and stored differ: all of them
// when stored is not in's row (nil: not known).
func changedColumns(in, stored *Incident) columnSet {
	if stored == nil || stored.ID != in.ID {
		return allColumns
	}
	var cols columnSet
	for i, c := range incidentTable {
		if !c.same(in, stored) {
			cols |= 1 << i
		}
	}
	return cols
}

// columnValues are in's values of cols, in the order of incidentTable,
// with room for one more.
func columnValues(in *Incident, cols columnSet) []any {
	args := make([]any, 0, bits.OnesCount64(uint64(cols))+1)
	for i, c := range incidentTable {
		if cols&(1<<i) != 0 {
			args = append(args, c.value(in))
		}
	}
	return args
}

// incidentStatements are the texts of the statements writing incidents:
// the insert, and the update of each set of columns written so far. The
// engine's steps change columns in a few sets (all of its tests together
// write some fifty), so the statements prepared stay few.
var incidentStatements = struct {
	insert string
	mu     sync.Mutex
	update map[columnSet]string
}{insert: insertIncident(), update: map[columnSet]string{}}

func insertIncident() string {
	names := make([]string, len(incidentTable))
	for i, c := range incidentTable {
		names[i] = c.name
	}
	return `INSERT INTO incidents (` + strings.Join(names, ", ") + `) VALUES (?` + strings.Repeat(", ?", len(names)-1) + `)`
}

// updateIncident is the text of the update of cols.
func updateIncident(cols columnSet) string {
	s := &incidentStatements
	s.mu.Lock()
	defer s.mu.Unlock()
	if q, ok := s.update[cols]; ok {
		return q
	}
	var sets []string
	for i, c := range incidentTable {
		if cols&(1<<i) != 0 {
			sets = append(sets, c.name+" = ?")
		}
	}
	q := `UPDATE incidents SET ` + strings.Join(sets, ", ") + ` WHERE id = ?`
	s.update[cols] = q
	return q
}

// SaveIncident inserts a new incident (setting its ID) or updates one.
func (t *Tx) SaveIncident(ctx context.Context, in *Incident) error {
	return t.SaveIncidentOver(ctx, in, nil)
}

// SaveIncidentOver saves an incident whose row holds stored (nil: not
// known). Only the columns that changed are written, found field by
// field: an event changes a few, and formatting all of them twice to
// compare, then binding them, took a tenth of the CPU of an alert storm.
// Nothing is written when nothing changed; the indexes are left alone
// when none of their columns changed.
func (t *Tx) SaveIncidentOver(ctx context.Context, in, stored *Incident) error {
	if in.ID == 0 {
		res, err := exec(ctx, t, incidentStatements.insert, columnValues(in, allColumns)...)
		if err != nil {
			return err
		}
		in.ID, err = res.LastInsertId()
		return err
	}
	cols := changedColumns(in, stored)
	if cols == 0 {
		return nil
	}
	_, err := exec(ctx, t, updateIncident(cols), append(columnValues(in, cols), in.ID)...)
	return err
}

// IncidentMessage says where an incident is shown in one room: its own
// message, or a line in a storm summary.
type IncidentMessage struct {
	IncidentID int64
	Transport  string
	Room       string
	OutboxID   int64 // 0 when shown in a summary
	SummaryID  int64 // 0 when it has its own message
	CreatedAt  time.Time
	LastHash   int64 // of the content last queued for the message
}

// AddIncidentMessage records where an incident is shown.
func (t *Tx) AddIncidentMessage(ctx context.Context, m IncidentMessage) error {
	_, err := exec(ctx, t, `INSERT INTO incident_messages (incident_id, transport, room, outbox_id, summary_id, created_at, last_hash)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, m.IncidentID, m.Transport, m.Room, nullID(m.OutboxID), nullID(m.SummaryID), unixMS(m.CreatedAt), m.LastHash)
	return err
}

// SetIncidentMessageHash records the hash of what was last queued for an
// incident's message in a room.
func (t *Tx) SetIncidentMessageHash(ctx context.Context, m IncidentMessage) error {
	_, err := exec(ctx, t, `UPDATE incident_messages SET last_hash = ? WHERE incident_id = ? AND transport = ? AND room = ?`,
		m.LastHash, m.IncidentID, m.Transport, m.Room)
	return err
}

// IncidentMessages lists where an incident is shown.
func (t *Tx) IncidentMessages(ctx context.Context, incidentID int64) ([]IncidentMessage, error) {
	return queryAll(ctx, t, `SELECT incident_id, transport, room, COALESCE(outbox_id, 0), COALESCE(summary_id, 0), created_at, last_hash
		FROM incident_messages WHERE incident_id = ? ORDER BY transport, room`, scanIncidentMessage, incidentID)
}

func scanIncidentMessage(row scanner) (IncidentMessage, error) {
	var m IncidentMessage
	var created int64
	err := row.Scan(&m.IncidentID, &m.Transport, &m.Room, &m.OutboxID, &m.SummaryID, &created, &m.LastHash)
	m.CreatedAt = ms(created)
	return m, err
}

// IncidentByRemoteID finds the incident whose own message was delivered
// as the given remote event (for reactions).
func (t *Tx) IncidentByRemoteID(ctx context.Context, transport, remoteID string) (Incident, bool, error) {
	return t.incident(ctx, `id = (SELECT m.incident_id FROM incident_messages m JOIN outbox o ON o.id = m.outbox_id
		WHERE o.transport = ? AND o.remote_id = ? LIMIT 1)`, transport, remoteID)
}

// RoomMessageTimes returns when the incident messages of their own posted
// to a room since t were posted (storm bounding).
func (t *Tx) RoomMessageTimes(ctx context.Context, transport, room string, since time.Time) ([]time.Time, error) {
	return queryAll(ctx, t, `SELECT created_at FROM incident_messages WHERE transport = ? AND room = ? AND outbox_id IS NOT NULL
		AND created_at >= ?`, scanTime, transport, room, since.UnixMilli())
}

func scanTime(row scanner) (time.Time, error) {
	var at int64
	err := row.Scan(&at)
	return ms(at), err
}

// Summary is a storm summary message of one room.
type Summary struct {
	ID         int64
	Transport  string
	Room       string
	OutboxID   int64
	OpenedAt   time.Time
	EditDueAt  time.Time
	LastEditAt time.Time
	LastHash   int64 // of the content last queued for it
}

const summaryColumns = `id, transport, room, outbox_id, opened_at, COALESCE(edit_due_at, 0), last_edit_at, last_hash`

func scanSummary(row scanner) (Summary, error) {
	var s Summary
	var opened, due, last int64
	err := row.Scan(&s.ID, &s.Transport, &s.Room, &s.OutboxID, &opened, &due, &last, &s.LastHash)
	s.OpenedAt, s.EditDueAt, s.LastEditAt = ms(opened), ms(due), ms(last)
	return s, err
}

// CurrentSummary returns the room's newest summary that an incident joined
// (or that opened) since t: the summary of the storm under way, if any.
func (t *Tx) CurrentSummary(ctx context.Context, transport, room string, since time.Time) (Summary, bool, error) {
	s, err := scanSummary(queryRow(ctx, t, `SELECT `+summaryColumns+` FROM summaries s WHERE transport = ? AND room = ?
		AND MAX(opened_at, COALESCE((SELECT MAX(created_at) FROM incident_messages m WHERE m.summary_id = s.id), 0)) >= ?
		ORDER BY id DESC LIMIT 1`, transport, room, since.UnixMilli()))
	if errors.Is(err, sql.ErrNoRows) {
		return s, false, nil
	}
	return s, err == nil, err
}

// SaveSummary inserts (ID 0) or updates a summary.
func (t *Tx) SaveSummary(ctx context.Context, s *Summary) error {
	if s.ID == 0 {
		res, err := exec(ctx, t, `INSERT INTO summaries (transport, room, outbox_id, opened_at, edit_due_at, last_edit_at, last_hash)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, s.Transport, s.Room, s.OutboxID, unixMS(s.OpenedAt), nullMS(s.EditDueAt), unixMS(s.LastEditAt), s.LastHash)
		if err != nil {
			return err
		}
		s.ID, err = res.LastInsertId()
		return err
	}
	_, err := exec(ctx, t, `UPDATE summaries SET edit_due_at = ?, last_edit_at = ?, last_hash = ? WHERE id = ?`,
		nullMS(s.EditDueAt), unixMS(s.LastEditAt), s.LastHash, s.ID)
	return err
}

// Summary returns a summary by ID.
func (t *Tx) Summary(ctx context.Context, id int64) (Summary, error) {
	return scanSummary(queryRow(ctx, t, `SELECT `+summaryColumns+` FROM summaries WHERE id = ?`, id))
}

// DueSummaries returns summaries owed a debounced edit by now.
func (t *Tx) DueSummaries(ctx context.Context, now time.Time) ([]Summary, error) {
	return queryAll(ctx, t, `SELECT `+summaryColumns+` FROM summaries WHERE edit_due_at IS NOT NULL AND edit_due_at <= ?`,
		scanSummary, now.UnixMilli())
}

// SummaryIncidents lists the incidents shown in a summary.
func (t *Tx) SummaryIncidents(ctx context.Context, summaryID int64) ([]Incident, error) {
	return t.incidents(ctx, `id IN (SELECT incident_id FROM incident_messages WHERE summary_id = ?) ORDER BY id`, summaryID)
}

// Fact returns a remembered fact.
func (t *Tx) Fact(ctx context.Context, kind, key string) (string, bool, error) {
	var v string
	err := queryRow(ctx, t, `SELECT value FROM facts WHERE kind = ? AND key = ?`, kind, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return v, err == nil, err
}

// SetFact remembers a fact.
func (t *Tx) SetFact(ctx context.Context, kind, key, value string) error {
	_, err := exec(ctx, t, `INSERT INTO facts (kind, key, value, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, kind, key, value, t.now)
	return err
}

// Fact is a remembered fact.
type Fact struct{ Kind, Key, Value string }

// addFactsStatements are the statements of AddFacts by the binary
// logarithm of their number of rows: a text per power of two, so that
// few are prepared.
var addFactsStatements = func() (texts [7]string) {
	for i := range texts {
		texts[i] = `INSERT INTO facts (kind, key, value, updated_at) VALUES (?, ?, ?, ?)` +
			strings.Repeat(`, (?, ?, ?, ?)`, 1<<i-1) + ` ON CONFLICT (kind, key) DO NOTHING`
	}
	return texts
}()

// AddFacts remembers facts, each unless one is already remembered for its
// key, in statements of a power of two rows (at most 64), as few as add
// up to them. The rows are bound as parameters: read by SQLite from a
// JSON list, they took half as long again to add.
func (t *Tx) AddFacts(ctx context.Context, facts []Fact) error {
	now := any(t.now)
	for len(facts) > 0 {
		log := min(bits.Len(uint(len(facts)))-1, len(addFactsStatements)-1)
		rows := facts[:1<<log]
		args := make([]any, 0, 4*len(rows))
		for _, f := range rows {
			args = append(args, f.Kind, f.Key, f.Value, now)
		}
		if _, err := exec(ctx, t, addFactsStatements[log], args...); err != nil {
			return err
		}
		facts = facts[len(rows):]
	}
	return nil
}

// DeleteFact forgets a fact.
func (t *Tx) DeleteFact(ctx context.Context, kind, key string) error {
	_, err := exec(ctx, t, `DELETE FROM facts WHERE kind = ? AND key = ?`, kind, key)
	return err
}

// ForgetFactsBefore drops facts of a kind not updated since t.
func (t *Tx) ForgetFactsBefore(ctx context.Context, kind string, before time.Time) error {
	_, err := exec(ctx, t, `DELETE FROM facts WHERE kind = ? AND updated_at < ?`, kind, before.UnixMilli())
	return err
}

// Silence is a silence: label matchers, or one incident until it resolves.
type Silence struct {
	ID         int64
	Matchers   string // "label=glob,label=glob"
	IncidentID int64
	Reason     string
	CreatedBy  string
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: until the incident resolves
	EndedAt    time.Time // zero: not ended by hand
}

// AddSilence records a silence.
func (t *Tx) AddSilence(ctx context.Context, s *Silence) error {
	res, err := exec(ctx, t, `INSERT INTO silences (matchers, incident_id, reason, created_by, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?)`, s.Matchers, nullID(s.IncidentID), s.Reason, s.CreatedBy, unixMS(s.CreatedAt), nullMS(s.ExpiresAt))
	if err != nil {
		return err
	}
	s.ID, err = res.LastInsertId()
	return err
}

// EndSilence ends a silence now; false if there was no active one.
func (t *Tx) EndSilence(ctx context.Context, id int64) (bool, error) {
	res, err := exec(ctx, t, `UPDATE silences SET ended_at = ? WHERE id = ? AND ended_at IS NULL`, t.now, id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// ActiveSilences returns the silences in force at now.
func (t *Tx) ActiveSilences(ctx context.Context, now time.Time) ([]Silence, error) {
	return queryAll(ctx, t, `SELECT id, matchers, COALESCE(incident_id, 0), reason, created_by, created_at, COALESCE(expires_at, 0)
		FROM silences WHERE ended_at IS NULL AND (expires_at IS NULL OR expires_at > ?) ORDER BY id`, scanSilence, now.UnixMilli())
}

func scanSilence(row scanner) (Silence, error) {
	var s Silence
	var created, expires int64
	err := row.Scan(&s.ID, &s.Matchers, &s.IncidentID, &s.Reason, &s.CreatedBy, &created, &expires)
	s.CreatedAt, s.ExpiresAt = ms(created), ms(expires)
	return s, err
}

// EndIncidentSilences ends the silences of one incident (it resolved).
func (t *Tx) EndIncidentSilences(ctx context.Context, incidentID int64) error {
	_, err := exec(ctx, t, `UPDATE silences SET ended_at = ? WHERE incident_id = ? AND ended_at IS NULL`, t.now, incidentID)
	return err
}
