package incidents

import (
	"context"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/store"
)

// post saves a new incident and posts its message to every room it is
// routed to, unless a silence covers it.
func (p *pass) post(ctx context.Context, in *store.Incident, detail *Detail) error {
	silencedBy, err := p.silencedBy(ctx, in)
	if err != nil {
		return err
	}
	in.SilencedBy = silencedBy
	in.LastEditAt = p.now
	// Reminders count from the post, not from the source's time: an
	// incident opened from an old event (a catch-up) is not reminded at once.
	in.RemindedAt = p.now
	if err := p.save(ctx, in); err != nil {
		return err
	}
	if in.SilencedBy != "" {
		return nil // tracked and counted, never posted while silenced
	}
	for _, r := range p.e.routes(in) {
		full, err := p.roomFull(ctx, r)
		if err != nil {
			return err
		}
		if full {
			if err := p.addToSummary(ctx, r, in); err != nil {
				return err
			}
			continue
		}
		msg := p.e.message(r.Transport, r.Room, renderIncident(in, p.now))
		msg.Key = rootKey(in)
		id, err := p.enqueue(ctx, msg)
		if err != nil {
			return err
		}
		err = p.tx.AddIncidentMessage(ctx, store.IncidentMessage{IncidentID: in.ID, Transport: r.Transport, Room: r.Room,
			OutboxID: id, CreatedAt: p.now, LastHash: contentHash(msg)})
		if err != nil {
			return err
		}
	}
	if detail != nil {
		return p.thread(ctx, in, renderDetail(*detail), true)
	}
	return nil
}

// roomFull tells whether a room had its fill of new incident messages: a
// leaky bucket of RoomCap per minute, where each message weighs 1 when
// posted and nothing a minute later. A burst that ended does not keep the
// room in a storm for a whole minute, as a count over the last minute did.
func (p *pass) roomFull(ctx context.Context, r Route) (bool, error) {
	times, err := p.tx.RoomMessageTimes(ctx, r.Transport, r.Room, p.now.Add(-time.Minute))
	if err != nil {
		return false, err
	}
	load := 0.0
	for _, t := range times {
		load += 1 - float64(p.now.Sub(t))/float64(time.Minute)
	}
	return load+1 > float64(p.e.cfg.RoomCap), nil
}

func (e *Engine) message(transport, room string, nodes ...render.Node) store.OutMessage {
	m := render.RenderLimit(e.cfg.MaxMessageBytes, nodes...)
	return store.OutMessage{Transport: transport, Room: room, Plain: m.Plain, HTML: m.HTML}
}

// rootKey and threadKey name an incident's message and the lines of its
// thread alike on every instance (store.OutMessage.Key): by the
// incident's key, and a line by its text.
func rootKey(in *store.Incident) string { return "incident/" + in.Key }

func threadKey(in *store.Incident, m store.OutMessage) string {
	return "thread/" + in.Key + "/" + strconv.FormatUint(uint64(contentHash(m)), 36)
}

// contentHash identifies a message's content, so that an edit identical
// to the last content queued is not sent.
func contentHash(m store.OutMessage) int64 {
	h := fnv.New64a()
	h.Write([]byte(m.Plain))
	h.Write([]byte{0})
	h.Write([]byte(m.HTML))
	return int64(h.Sum64())
}

// edit replaces each of the incident's messages with its current state,
// unless that is what it already shows; incidents shown in a summary make
// that summary owe an edit.
func (p *pass) edit(ctx context.Context, in *store.Incident) error {
	msgs, err := p.tx.IncidentMessages(ctx, in.ID)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.SummaryID != 0 {
			if err := p.summaryChanged(ctx, m.SummaryID); err != nil {
				return err
			}
			continue
		}
		out := p.e.message(m.Transport, m.Room, renderIncident(in, p.now))
		hash := contentHash(out)
		if hash == m.LastHash {
			continue
		}
		m.LastHash = hash
		out.EditOf = m.OutboxID
		if _, err := p.enqueue(ctx, out); err != nil {
			return err
		}
		if err := p.tx.SetIncidentMessageHash(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// thread posts a message under each of the incident's own messages. A
// capped one (a detail) is posted at most ThreadCap times per minute, the
// rest counted and shown on the message; uncapped ones (a resolution) are
// always posted.
func (p *pass) thread(ctx context.Context, in *store.Incident, detail render.Node, capped bool) error {
	if p.now.Sub(in.ThreadWindow) >= time.Minute {
		in.ThreadWindow, in.ThreadSent = p.now, 0
	}
	if capped && in.ThreadSent >= p.e.cfg.ThreadCap {
		in.ThreadSkipped++
		return p.editSoon(ctx, in)
	}
	if capped {
		in.ThreadSent++
	}
	if err := p.save(ctx, in); err != nil {
		return err
	}
	msgs, err := p.tx.IncidentMessages(ctx, in.ID)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.OutboxID == 0 {
			continue
		}
		out := p.e.message(m.Transport, m.Room, detail)
		out.ThreadRoot = m.OutboxID
		out.Key = threadKey(in, out)
		if _, err := p.enqueue(ctx, out); err != nil {
			return err
		}
	}
	return nil
}

// addToSummary lists an incident in the room's storm summary: the one an
// incident joined in the last minute, else a new one, so that a storm that
// ended does not swallow the next.
func (p *pass) addToSummary(ctx context.Context, r Route, in *store.Incident) error {
	sum, ok, err := p.tx.CurrentSummary(ctx, r.Transport, r.Room, p.now.Add(-time.Minute))
	if err != nil {
		return err
	}
	if !ok {
		msg := p.e.message(r.Transport, r.Room, renderSummary([]store.Incident{*in}, p.now))
		id, err := p.enqueue(ctx, msg)
		if err != nil {
			return err
		}
		sum = store.Summary{Transport: r.Transport, Room: r.Room, OutboxID: id, OpenedAt: p.now, LastEditAt: p.now, LastHash: contentHash(msg)}
		if err := p.tx.SaveSummary(ctx, &sum); err != nil {
			return err
		}
	}
	err = p.tx.AddIncidentMessage(ctx, store.IncidentMessage{IncidentID: in.ID, Transport: r.Transport, Room: r.Room, SummaryID: sum.ID, CreatedAt: p.now})
	if err != nil || !ok {
		return err
	}
	return p.summaryChanged(ctx, sum.ID)
}

// summaryChanged makes a summary owe a (debounced) edit.
func (p *pass) summaryChanged(ctx context.Context, id int64) error {
	sum, err := p.tx.Summary(ctx, id)
	if err != nil {
		return err
	}
	next := sum.LastEditAt.Add(p.e.cfg.EditInterval)
	if next.Before(p.now) {
		next = p.now
	}
	if sum.EditDueAt.IsZero() || sum.EditDueAt.After(next) {
		sum.EditDueAt = next
		return p.tx.SaveSummary(ctx, &sum)
	}
	return nil
}

// Rendering. Every string from a source goes through render.Text or
// render.Code, which escape it.

var severityMark = map[Severity]string{Info: "ℹ️", Warning: "🟠", Critical: "🔴"}

func renderIncident(in *store.Incident, now time.Time) render.Node {
	sev := Severity(in.Severity)
	var head []render.Node
	switch in.State {
	case store.IncidentResolved:
		head = append(head, render.Text("✅ RESOLVED · "))
	case store.IncidentNotice:
		head = append(head, render.Text(severityMark[sev]+" "))
	default:
		head = append(head, render.Text(severityMark[sev]+" "+strings.ToUpper(sev.String())+" · "))
	}
	head = append(head, render.Text(in.Title))
	nodes := []render.Node{render.Heading(head...)}
	if in.State == store.IncidentNotice {
		if in.Reason != "" {
			nodes = append(nodes, render.Line(render.Text(in.Reason)))
		}
		return render.Group(nodes...)
	}
	nodes = append(nodes, render.Line(render.Text("Latest: "), render.Text(in.Reason)))
	// Only what the incident's state says: an edit shows its time of
	// sending, and one that would change nothing else is not sent.
	status := []string{plural(in.Events, "event")}
	if in.State == store.IncidentResolved {
		status = append(status, "lasted "+duration(in.ResolvedAt.Sub(in.OpenedAt)), "resolved: "+in.Resolution)
	}
	status = append(status, "since "+in.OpenedAt.UTC().Format("15:04 UTC"))
	nodes = append(nodes, render.Line(render.Text(strings.Join(status, " · "))))
	var flags []string
	if in.Flapping {
		changes := plural(len(in.Changes), "state change")
		if len(in.Changes) >= maxFlapHistory {
			changes = "at least " + changes
		}
		flags = append(flags, "〰️ flapping: "+changes+" recently, updates only here")
	}
	if in.AckedBy != "" {
		flags = append(flags, "👀 acknowledged by "+in.AckedBy)
	}
	if in.SilencedBy != "" {
		flags = append(flags, "🔇 silenced by "+in.SilencedBy)
	}
	if in.ThreadSkipped > 0 {
		flags = append(flags, plural(in.ThreadSkipped, "detail")+" not posted in the thread (too many at once)")
	}
	if in.Reminders > 0 && in.AckedBy == "" && in.State == store.IncidentOpen {
		flags = append(flags, "⏰ reminded "+plural(in.Reminders, "time"))
	}
	for _, f := range flags {
		nodes = append(nodes, render.Line(render.Text(f)))
	}
	foot := "#" + strconv.FormatInt(in.ID, 10)
	if in.State == store.IncidentOpen {
		foot += " · react 👀 to acknowledge, 🔇 to silence until resolved"
	}
	nodes = append(nodes, render.Italic(render.Text(foot)))
	return render.Group(nodes...)
}

func renderDetail(d Detail) render.Node {
	nodes := []render.Node{render.Text(d.Text)}
	if d.Pre != "" {
		nodes = append(nodes, render.Pre(d.Pre))
	}
	return render.Group(nodes...)
}

func renderResolvedReply(in *store.Incident) render.Node {
	return render.Text("✅ Resolved after " + duration(in.ResolvedAt.Sub(in.OpenedAt)) + ": " + in.Resolution)
}

func renderReopened(in *store.Incident) render.Node {
	return render.Text("🔁 Firing again: " + in.Reason)
}

func renderReminder(in *store.Incident, now time.Time) render.Node {
	return render.Text("⏰ Still open after " + duration(now.Sub(in.OpenedAt)) + " and not acknowledged.")
}

// summaryLines bounds the incidents listed in a summary message.
const summaryLines = 30

func renderSummary(ins []store.Incident, now time.Time) render.Node {
	open := 0
	var items []render.Node
	for i, in := range ins {
		if in.State == store.IncidentOpen {
			open++
		}
		if i < summaryLines {
			state := severityMark[Severity(in.Severity)]
			if in.State == store.IncidentResolved {
				state = "✅"
			}
			items = append(items, render.Group(render.Text(state+" "), render.Text(in.Title),
				render.Text(" — "+plural(in.Events, "event")+" · #"+strconv.FormatInt(in.ID, 10))))
		}
	}
	nodes := []render.Node{
		render.Heading(render.Text("⚠️ Alert storm: " + plural(len(ins), "more incident") + " in this room, not posted one by one")),
		render.Line(render.Text(strconv.Itoa(open) + " still open · since " + ins[0].OpenedAt.UTC().Format("15:04 UTC") + " · see alerts for details")),
		render.List(items...),
	}
	if len(ins) > summaryLines {
		nodes = append(nodes, render.Text("… and "+strconv.Itoa(len(ins)-summaryLines)+" more"))
	}
	return render.Group(nodes...)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// duration prints a duration for people: 45s, 12m30s, 3h05m, 2d4h.
func duration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m" + pad(int(d.Seconds())%60) + "s"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h" + pad(int(d.Minutes())%60) + "m"
	}
	return strconv.Itoa(int(d.Hours())/24) + "d" + strconv.Itoa(int(d.Hours())%24) + "h"
}

func pad(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}
