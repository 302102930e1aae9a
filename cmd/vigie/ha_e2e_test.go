package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/internal/fakenomad"
	"github.com/vigie/vigie/internal/testenv"
	"github.com/vigie/vigie/store"
)

// haEnv is two or more Vigie instances sharing a homeserver, the fake
// Consul (the lock), the fake Nomad (the alerts) and a real S3 server
// (the replicated state), each with its own data directory and listener.
type haEnv struct {
	*matrixEnv
	room   id.RoomID
	nomad  *fakenomad.Server
	consul *fakeconsul.Server
	s3     *testenv.S3
	base   string // the configuration all instances share
}

type haInstance struct {
	name, config, dataDir, listen string
	proc                          *botProcess
}

func newHAEnv(t *testing.T, frames []string, encrypted bool) *haEnv {
	e := newMatrixEnv(t)
	h := &haEnv{matrixEnv: e, room: e.alice.CreateRoom(t, encrypted, e.botID),
		nomad:  fakenomad.New(t, fakenomad.Config{HeartbeatInterval: 200 * time.Millisecond, Frames: frames}),
		consul: fakeconsul.New(), s3: testenv.StartS3(t)}
	t.Cleanup(h.consul.Close)
	h.s3.CreateBucket(t, "vigie")
	base, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The shipped [ha] timings (session TTL, lock delay, replication
	// interval) are left as they are: the takeover is measured with them.
	h.base = string(base) + fmt.Sprintf(`[nomad]
address = %q
stream_timeout = "3s"
[consul]
address = %q
watch = false
[alerts]
edit_interval = "200ms"
[[alerts.rooms]]
room = %q
[s3]
endpoint = %q
bucket = "vigie"
access_key_id_file = %q
secret_access_key_file = %q
[ha]
enabled = true
`, h.nomad.URL, h.consul.URL, h.room, h.s3.URL, write("s3-key", h.s3.AccessKey), write("s3-secret", h.s3.SecretKey))
	return h
}

// instance writes the configuration of one instance: the shared one with
// its own name, data directory and listener, plus extra keys.
func (h *haEnv) instance(t *testing.T, name, extra string) *haInstance {
	in := &haInstance{name: name, dataDir: filepath.Join(h.dir, "data-"+name), listen: testenv.FreeLoopbackAddr(t)}
	cfg := strings.Replace(h.base, fmt.Sprintf("data_dir = %q", h.dataDir), fmt.Sprintf("data_dir = %q", in.dataDir), 1)
	cfg = strings.Replace(cfg, fmt.Sprintf("listen = %q", h.listen), fmt.Sprintf("listen = %q", in.listen), 1)
	cfg += fmt.Sprintf("instance = %q\n", name) + extra
	in.config = filepath.Join(h.dir, name+".toml")
	if err := os.WriteFile(in.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return in
}

func (h *haEnv) start(t *testing.T, in *haInstance) *haInstance {
	in.proc = startBot(h.owner, in.config)
	in.proc.waitReady(t, in.listen)
	return in
}

// waitLog waits until the instance logged a line holding each of want.
func (in *haInstance) waitLog(t *testing.T, timeout time.Duration, want ...string) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range strings.Split(in.proc.log(), "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(l, w)
			}
			if ok {
				return time.Now()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s did not log %q within %s\n%s", in.name, want, timeout, in.proc.logTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (in *haInstance) leads() bool { return strings.Contains(in.proc.log(), "Leading: restoring") }

// readyz returns the status and body of the instance's /readyz.
func (in *haInstance) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + in.listen + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// leaderNotices are the "now leads" notices in a room view; the rest is
// compared with an uninterrupted run.
func leaderNotices(v *roomView) []string {
	var notices, rest []string
	threads := map[int][]string{}
	for i, m := range v.Messages {
		if strings.Contains(m, "now leads (term") {
			notices = append(notices, m)
			continue
		}
		if th, ok := v.Threads[i]; ok {
			threads[len(rest)] = th
		}
		rest = append(rest, m)
	}
	v.Messages, v.Threads = rest, threads
	return notices
}

// The leader is killed (SIGKILL) in the middle of an alert storm, with
// events applied and messages sent since its last replica: the other
// instance takes over within the bound, restores the replica, replays
// Nomad's events and finds in the room what the dead leader had sent. The
// room ends up as after an uninterrupted run, each alert once.
func TestHATakeoverExactlyOnce(t *testing.T) {
	t.Parallel()
	testTakeover(t, false)
}

// The same in an encrypted room: the waiting instance's device exists
// before the leader sends, so the leader shares its room keys with it and
// the new leader can read what the dead one sent.
func TestHATakeoverExactlyOnceEncrypted(t *testing.T) {
	t.Parallel()
	testTakeover(t, true)
}

func testTakeover(t *testing.T, encrypted bool) {
	frames := fakenomad.CaptureFrames()
	h := newHAEnv(t, frames[:captureStart], encrypted)
	want := expectedView(t, frames, h.room.String())
	a := h.start(t, h.instance(t, "a", ""))
	a.waitLog(t, 30*time.Second, "Leading")
	h.alice.WaitForJoin(t, h.room, h.botID, 30*time.Second)
	b := h.start(t, h.instance(t, "b", ""))
	b.waitLog(t, 30*time.Second, "Another instance leads")
	if code, body := b.readyz(t); code != http.StatusOK {
		t.Fatalf("a waiting instance is ready to take over: readyz %d %s", code, body)
	}

	// Let a replica hold a's stream position (until a position is stored,
	// a new leader starts at the cluster's index, by design), then stream
	// half the storm: what a applies from now on is newer than its replica.
	st := openStore(t, a.dataDir)
	defer st.Close()
	waitCursor(t, st, 0)
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(a.proc.log(), "State replicated to S3") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no replica with the stream position within 30s\n%s", a.proc.logTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	rest := frames[captureStart:]
	half := len(rest) / 2
	h.nomad.Append(rest[:half]...)
	waitCursor(t, st, h.nomad.LastIndex())
	waitSent(t, h, want, 1)
	killed := time.Now()
	a.proc.kill()
	h.nomad.Append(rest[half:]...)

	tookOver := b.waitLog(t, 60*time.Second, "Leading: restoring")
	// a's own notice may be lost: a posted it before its first sync joined
	// the room it was invited to.
	bNotice := func(msgs []*event.Event) *event.Event {
		for _, m := range leaderNoticeEvents(msgs, h.botID) {
			if strings.Contains(m.Content.AsMessage().Body, "instance b") {
				return m
			}
		}
		return nil
	}
	first := bNotice(h.alice.WaitForMessages(t, h.room, 60*time.Second, func(msgs []*event.Event) bool { return bNotice(msgs) != nil }))
	alertAt := time.UnixMilli(first.Timestamp)
	t.Logf("takeover: lock after %s, first alert from the new leader %s after the kill (bound 30s)",
		tookOver.Sub(killed).Round(100*time.Millisecond), alertAt.Sub(killed).Round(100*time.Millisecond))
	if d := alertAt.Sub(killed); d > 30*time.Second {
		t.Errorf("takeover took %s, want at most 30s", d)
	}

	bst := openStore(t, b.dataDir)
	defer bst.Close()
	waitCursor(t, bst, h.nomad.LastIndex())
	waitEditsQueued(t, bst)
	waitOutbox(t, b.dataDir, func(c map[string]int) bool { return c[store.StatePending] == 0 })
	adopted := strings.Count(b.proc.log(), "The last leader had sent this message")
	t.Logf("%d messages of the dead leader found in the room and not sent again", adopted)
	if strings.Contains(b.proc.log(), `"undecryptable":`) && !strings.Contains(b.proc.log(), `"undecryptable":0`) {
		t.Errorf("the new leader could not read some of the dead leader's messages")
	}

	got := matrixView(h.alice.Messages(t, h.room), h.botID)
	notices := leaderNotices(&got)
	if len(notices) == 0 || len(notices) > 2 || !strings.Contains(notices[len(notices)-1], "instance b") {
		t.Errorf("want a notice per leader (a's may be lost), b's last, got %q", notices)
	}
	if !strings.Contains(notices[len(notices)-1], "written by a") {
		t.Errorf("b's notice says which replica it restored: %q", notices[len(notices)-1])
	}
	if got.String() != want.String() {
		t.Fatalf("room after the takeover differs from an uninterrupted run\n--- got\n%s--- want\n%s", got, want)
	}
	b.proc.stop(t)
}

func leaderNoticeEvents(msgs []*event.Event, bot id.UserID) []*event.Event {
	var out []*event.Event
	for _, m := range msgs {
		if m.Sender == bot && strings.Contains(m.Content.AsMessage().Body, "now leads (term") && m.Content.AsMessage().RelatesTo.GetReplaceID() == "" {
			out = append(out, m)
		}
	}
	return out
}

// waitSent waits until the room shows at least n incident messages of the
// scenario (the leader notice apart).
func waitSent(t *testing.T, h *haEnv, want roomView, n int) {
	t.Helper()
	h.alice.WaitForMessages(t, h.room, 30*time.Second, func(msgs []*event.Event) bool {
		v := matrixView(msgs, h.botID)
		leaderNotices(&v)
		return len(v.Messages) >= min(n, len(want.Messages))
	})
}

func openStore(t *testing.T, dataDir string) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Two instances started at once: exactly one leads. One whose
// configuration differs from the leader's does not contend and says which
// keys differ. The leader cut off from Consul stops within one session
// TTL and says why.
func TestHAOneLeaderAndStepDown(t *testing.T) {
	t.Parallel()
	h := newHAEnv(t, fakenomad.CaptureFrames()[:captureStart], false)
	a, b := h.instance(t, "a", ""), h.instance(t, "b", "")
	a.proc, b.proc = startBot(h.owner, a.config), startBot(h.owner, b.config)
	a.proc.waitReady(t, a.listen)
	b.proc.waitReady(t, b.listen)
	deadline := time.Now().Add(30 * time.Second)
	for !a.leads() && !b.leads() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	if a.leads() == b.leads() {
		t.Fatalf("want exactly one leader: a %v, b %v", a.leads(), b.leads())
	}
	leader, waiting := a, b
	if b.leads() {
		leader, waiting = b, a
	}
	waiting.waitLog(t, 10*time.Second, "Another instance leads")
	if m := metricsText(t, leader.listen); !strings.Contains(m, `vigie_ha_role{role="leader"} 1`) {
		t.Errorf("the leader's metrics do not say it leads:\n%s", m)
	}
	if m := metricsText(t, waiting.listen); !strings.Contains(m, `vigie_ha_role{role="candidate"} 1`) {
		t.Errorf("the waiting instance's metrics do not say it is a candidate")
	}

	// c is never ready: it says why in /readyz.
	c := h.instance(t, "c", "replicate_interval = \"20s\"\n")
	c.proc = startBot(h.owner, c.config)
	c.waitLog(t, 30*time.Second, "Not contending", "ha.replicate_interval")
	if code, body := c.readyz(t); code == http.StatusOK || !strings.Contains(body, "ha.replicate_interval") {
		t.Errorf("an instance configured otherwise says so in /readyz: %d %s", code, body)
	}
	c.proc.kill()

	stopped := time.Now()
	h.consul.Stop()
	code := leader.proc.wait(t, 30*time.Second)
	took := time.Since(stopped)
	t.Logf("leader stepped down %s after Consul stopped (session TTL 10s), exit %d", took.Round(100*time.Millisecond), code)
	if code == 0 {
		t.Error("a leader that lost its lock exits non-zero, for its supervisor to restart it")
	}
	leader.waitLog(t, time.Second, "Leadership lost", "Consul unreachable")
}

// S3 unreachable when the leader dies: the new leader retries for
// restore_timeout, then leads with an empty state, loudly: an incident
// says the state was lost, and the database it could not bring up to date
// is kept aside, not deleted.
func TestHAStateLostWhenS3Unreachable(t *testing.T) {
	t.Parallel()
	h := newHAEnv(t, fakenomad.CaptureFrames()[:captureStart], false)
	// The timeout under test is shortened; the rest is as shipped.
	a := h.start(t, h.instance(t, "a", "restore_timeout = \"5s\"\n"))
	a.waitLog(t, 30*time.Second, "State replicated to S3")
	h.alice.WaitForJoin(t, h.room, h.botID, 30*time.Second)
	b := h.start(t, h.instance(t, "b", "restore_timeout = \"5s\"\n"))
	b.waitLog(t, 30*time.Second, "Another instance leads")
	// b's data directory holds a database of its own, from before.
	if st := openStore(t, b.dataDir); st.Close() != nil {
		t.Fatal("cannot prepare b's stale database")
	}
	h.s3.Stop()
	a.proc.kill()
	b.waitLog(t, 60*time.Second, "S3 unavailable: cannot restore the state yet")
	b.waitLog(t, 30*time.Second, "Leading with an empty state")
	lost := h.alice.WaitForMessages(t, h.room, 30*time.Second, func(msgs []*event.Event) bool {
		for _, m := range msgs {
			if m.Sender == h.botID && strings.Contains(m.Content.AsMessage().Body, "leads without the last leader's state") {
				return true
			}
		}
		return false
	})
	for _, m := range lost {
		if body := m.Content.AsMessage().Body; strings.Contains(body, "leads without") && !strings.Contains(body, "S3 unavailable for 5s") {
			t.Errorf("the incident says why the state was lost: %q", body)
		}
	}
	aside, _ := filepath.Glob(filepath.Join(b.dataDir, store.FileName+".unrestored-*"))
	if len(aside) == 0 {
		t.Error("the stale database was not kept aside")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := b.readyz(t)
		if code != http.StatusOK && strings.Contains(body, "state replication to S3 failing") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a leader whose state cannot reach S3 is not ready: %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
