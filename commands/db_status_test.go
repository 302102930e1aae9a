package commands

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/stolon"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/telemetry"
)

// stolonCapture is a Stolon state captured from a real cluster (see
// fakeconsul.StolonState), its clusterdata changed by edit (nil: as
// captured).
func stolonCapture(t *testing.T, state string, edit func(doc map[string]any)) []byte {
	t.Helper()
	body := fakeconsul.StolonState(state)
	if edit == nil {
		return body
	}
	var entries []map[string]any
	if err := json.Unmarshal(body, &entries); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e["Key"].(string), "/clusterdata") {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(e["Value"].(string))
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // xLogPos is a uint64
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		edit(doc)
		if raw, err = json.Marshal(doc); err != nil {
			t.Fatal(err)
		}
		e["Value"] = base64.StdEncoding.EncodeToString(raw)
	}
	out, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// stolonObj is the object at keys in a decoded document.
func stolonObj(t *testing.T, m map[string]any, keys ...string) map[string]any {
	t.Helper()
	for _, k := range keys {
		next, ok := m[k].(map[string]any)
		if !ok {
			t.Fatalf("no object %q in %v", k, keys)
		}
		m = next
	}
	return m
}

// newStolonService serves body from a fake Consul as Stolon cluster
// "main", and configures a second cluster, "analytics", whose keys are
// not there.
func newStolonService(t *testing.T, body []byte) (*stolon.Service, *fakeconsul.Server) {
	t.Helper()
	fake := fakeconsul.New()
	t.Cleanup(fake.Close)
	if err := fake.LoadKV(body); err != nil {
		t.Fatal(err)
	}
	kv := &stolon.KV{Address: fake.URL}
	clusters := []*stolon.Cluster{{Name: "main", KV: kv}, {Name: "analytics", KV: kv}}
	return stolon.NewService(clusters, nil, nil), fake
}

// dbStatus runs db status on a cluster and renders the reply.
func dbStatus(t *testing.T, svc *stolon.Service, cluster string) render.Message {
	t.Helper()
	node, err := (&DBStatus{Stolon: svc}).Run(t.Context(), &Request{Invocation: Invocation{Name: "db status", Args: []string{cluster}}})
	if err != nil {
		t.Fatalf("db status %s: %v", cluster, err)
	}
	return render.Render(node)
}

var (
	htmlRowRE  = regexp.MustCompile(`<tr>(.*?)</tr>`)
	htmlCellRE = regexp.MustCompile(`<t[hd]>(.*?)</t[hd]>`)
)

// tableRows are the rows of the HTML table, header first, cells unescaped.
func tableRows(t *testing.T, htmlText string) [][]string {
	t.Helper()
	var rows [][]string
	for _, r := range htmlRowRE.FindAllStringSubmatch(htmlText, -1) {
		var cells []string
		for _, c := range htmlCellRE.FindAllStringSubmatch(r[1], -1) {
			cells = append(cells, html.UnescapeString(c[1]))
		}
		rows = append(rows, cells)
	}
	if len(rows) == 0 {
		t.Fatalf("no table in %s", htmlText)
	}
	return rows
}

var statusHeader = []string{"KEEPER", "ROLE", "KEEPER OK", "PG OK", "ADDRESS", "LAG", "TL", "SYNC", "GEN", "ELECTABLE"}

// checkRows compares the table's rows with want, header included.
func checkRows(t *testing.T, msg render.Message, want ...[]string) {
	t.Helper()
	got := tableRows(t, msg.HTML)
	want = append([][]string{statusHeader}, want...)
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(got), len(want), msg.Plain)
	}
	for i := range want {
		if strings.Join(got[i], " | ") != strings.Join(want[i], " | ") {
			t.Errorf("row %d:\n got %q\nwant %q", i, got[i], want[i])
		}
	}
}

// lines are the plain text's lines.
func lines(plain string) []string { return strings.Split(plain, "\n") }

func TestDBStatusNormal(t *testing.T) {
	svc, _ := newStolonService(t, stolonCapture(t, "normal", nil))
	msg := dbStatus(t, svc, "main")
	checkRows(t, msg,
		[]string{"keeper0", "master", "✅", "✅", "127.0.0.1:25433", "—", "1", "—", "3/3", "—"},
		[]string{"keeper1", "standby", "✅", "✅", "127.0.0.1:25434", "0 B", "1", "no", "2/2", "✅"},
	)
	ls := lines(msg.Plain)
	if want := "Stolon main: phase normal, master keeper0 (db d51919e0) on timeline 1; synchronous replication off; maxStandbyLag 1.18 MiB."; ls[0] != want {
		t.Errorf("headline\n %q\nwant\n %q", ls[0], want)
	}
	// The plain table: the header, the dashes, one line per keeper, aligned.
	if !strings.HasPrefix(ls[1], "KEEPER   ROLE     KEEPER OK  PG OK  ADDRESS          LAG  TL  SYNC  GEN  ELECTABLE") ||
		!strings.HasPrefix(ls[2], "-----") || !strings.HasPrefix(ls[3], "keeper0  master   ✅") || !strings.HasPrefix(ls[4], "keeper1  standby  ✅") {
		t.Errorf("plain table:\n%s", msg.Plain)
	}
	if tail := strings.Join(ls[len(ls)-2:], "\n"); tail != "Sentinels: f6db1c81 (leader).\nProxies: 5a6b1224 ✅, routing to the master." {
		t.Errorf("sentinels and proxies:\n%s", tail)
	}
	if strings.Contains(msg.Plain, "⚠️") {
		t.Errorf("a warning on a healthy cluster:\n%s", msg.Plain)
	}
	// "" is the only cluster... of two here: the name is asked for.
	_, err := (&DBStatus{Stolon: svc}).Run(t.Context(), &Request{})
	if err == nil || err.Error() != "several Stolon clusters are configured: name one of main, analytics" {
		t.Errorf("no name: %v", err)
	}
}

func TestDBStatusLagging(t *testing.T) {
	// The standby's walreceiver stopped: 55 MiB of WAL not received.
	svc, _ := newStolonService(t, stolonCapture(t, "lagging-walrcv-stopped", nil))
	msg := dbStatus(t, svc, "main")
	checkRows(t, msg,
		[]string{"keeper0", "master", "✅", "✅", "127.0.0.1:25433", "—", "1", "—", "3/3", "—"},
		[]string{"keeper1", "standby", "✅", "✅", "127.0.0.1:25434", "55.2 MiB ⚠️", "1", "no", "2/2", "❌ 57881744 bytes behind, beyond maxStandbyLag (1232896)"},
	)

	// Replay paused with 57 MB written: received, not replayed, so Stolon
	// (and this view of it) sees no lag; the failover's preflight asks
	// the standby itself.
	svc, _ = newStolonService(t, stolonCapture(t, "lagging", nil))
	msg = dbStatus(t, svc, "main")
	checkRows(t, msg,
		[]string{"keeper0", "master", "✅", "✅", "127.0.0.1:25433", "—", "1", "—", "3/3", "—"},
		[]string{"keeper1", "standby", "✅", "✅", "127.0.0.1:25434", "0 B", "1", "no", "2/2", "✅"},
	)

	// A little behind, within maxStandbyLag: no warning.
	svc, _ = newStolonService(t, stolonCapture(t, "normal", func(doc map[string]any) {
		stolonObj(t, doc, "dbs", "d51919e0", "status")["xLogPos"] = json.Number("50759824") // 50000 bytes ahead
	}))
	if row := tableRows(t, dbStatus(t, svc, "main").HTML)[2]; row[5] != "48.8 KiB" || row[9] != "✅" {
		t.Errorf("lag within max: %q", row)
	}
}

func TestDBStatusAfterFailover(t *testing.T) {
	// 3 min after failkeeper keeper0: keeper1 master on timeline 2,
	// keeper0 resyncing into a new DB that has reported nothing yet.
	svc, _ := newStolonService(t, stolonCapture(t, "failover", nil))
	msg := dbStatus(t, svc, "main")
	checkRows(t, msg,
		[]string{"keeper1", "master", "✅", "✅", "127.0.0.1:25434", "—", "2", "—", "4/4", "—"},
		[]string{"keeper0", "standby", "✅", "❌", "127.0.0.1:25433", "not reported", "—", "no", "1/0", "❌ its keeper has not applied its latest spec (converging)"},
	)
	ls := lines(msg.Plain)
	if want := "Stolon main: phase normal, master keeper1 (db 0e651c76) on timeline 2; synchronous replication off; maxStandbyLag 1.18 MiB."; ls[0] != want {
		t.Errorf("headline %q", ls[0])
	}
	if !strings.Contains(msg.Plain, "\nSentinels: 81375632 (leader).\nProxies: 52329865 ✅, routing to the master.") {
		t.Errorf("sentinels and proxies:\n%s", msg.Plain)
	}
}

// clusterStatus sets a field of clusterdata's cluster.status.
func clusterStatus(field, value string) func(t *testing.T, doc map[string]any) {
	return func(t *testing.T, doc map[string]any) { stolonObj(t, doc, "cluster", "status")[field] = value }
}

// What is wrong shows, with ⚠️, in the captured states where it was.
func TestDBStatusWarnings(t *testing.T) {
	for _, tc := range []struct {
		state string
		edit  func(t *testing.T, doc map[string]any)
		want  []string // lines of the plain text
		row   int      // a table row to check, 0 for none
		cells []string
	}{
		{state: "no-sentinel", want: []string{"⚠️ Sentinels: none alive; nobody would elect a new master.", "Proxies: 5a6b1224 ✅, routing to the master."}},
		{state: "proxy-down", want: []string{"Sentinels: 81375632 (leader).", "⚠️ Proxies: none alive; clients cannot reach the master through a proxy."}},
		{state: "sync", want: []string{"Stolon main: phase normal, master keeper0 (db d51919e0) on timeline 1; synchronous replication on (1 wanted); maxStandbyLag 1.18 MiB."},
			row: 2, cells: []string{"keeper1", "standby", "✅", "✅", "127.0.0.1:25434", "0 B", "1", "yes", "2/2", "✅"}},
		{state: "standby-down", row: 2,
			cells: []string{"keeper1", "standby", "❌ (no info key)", "❌", "127.0.0.1:25434", "23.1 KiB", "1", "no", "2/2", "❌ keeper keeper1 unhealthy"}},
		{state: "failover-02", row: 1, // stolonctl failkeeper keeper0, not yet acted on
			cells: []string{"keeper0", "master", "✅ forceFail", "✅", "127.0.0.1:25433", "—", "1", "—", "5/5", "—"}},
		{state: "failover-06", // elected; the sentinel removed the proxy's master
			want: []string{"Stolon main: phase normal, master keeper1 (db 0e651c76) on timeline 1; synchronous replication off; maxStandbyLag 1.18 MiB.",
				"⚠️ Proxies: 52329865 ⚠️ not routing to the master (generation 10 of 11)."}},
		{state: "normal", edit: clusterStatus("phase", "initializing"),
			want: []string{"⚠️ Stolon main: phase initializing, master keeper0 (db d51919e0) on timeline 1; synchronous replication off; maxStandbyLag 1.18 MiB."}},
		{state: "normal", edit: clusterStatus("master", ""),
			want: []string{"⚠️ Stolon main: phase normal, no master known; synchronous replication off; maxStandbyLag 1.18 MiB.",
				"⚠️ Proxies: 5a6b1224 ⚠️ not routing to the master (generation 2 of 2)."}},
		{state: "sync", edit: clusterStatus("master", ""),
			want: []string{"⚠️ Stolon main: phase normal, no master known; synchronous replication on (1 wanted); maxStandbyLag 1.18 MiB."}},
	} {
		var edit func(map[string]any)
		if tc.edit != nil {
			edit = func(doc map[string]any) { tc.edit(t, doc) }
		}
		svc, _ := newStolonService(t, stolonCapture(t, tc.state, edit))
		msg := dbStatus(t, svc, "main")
		ls := lines(msg.Plain)
		for _, w := range tc.want {
			found := false
			for _, l := range ls {
				found = found || l == w
			}
			if !found {
				t.Errorf("%s: no line %q in:\n%s", tc.state, w, msg.Plain)
			}
		}
		if tc.row > 0 {
			if row := tableRows(t, msg.HTML)[tc.row]; strings.Join(row, " | ") != strings.Join(tc.cells, " | ") {
				t.Errorf("%s: row %d\n got %q\nwant %q", tc.state, tc.row, row, tc.cells)
			}
		}
	}
}

// Keeper UIDs and addresses come from the cluster's keys, which whoever
// writes to Consul controls: they are text in the HTML, never markup.
func TestDBStatusEscapesHTML(t *testing.T) {
	const uid, addr = `<script>alert(1)</script>`, `<img src=x onerror=alert(1)>`
	svc, _ := newStolonService(t, stolonCapture(t, "normal", func(doc map[string]any) {
		keepers := stolonObj(t, doc, "keepers")
		k := keepers["keeper1"].(map[string]any)
		k["uid"] = uid
		keepers[uid] = k
		delete(keepers, "keeper1")
		stolonObj(t, doc, "dbs", "0e651c76", "spec")["keeperUID"] = uid
		stolonObj(t, doc, "dbs", "d51919e0", "status")["listenAddress"] = addr
	}))
	msg := dbStatus(t, svc, "main")
	for _, bad := range []string{"<script", "<img", "</script"} {
		if strings.Contains(msg.HTML, bad) {
			t.Fatalf("HTML holds markup from the keys (%s):\n%s", bad, msg.HTML)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;:25433"} {
		if !strings.Contains(msg.HTML, want) {
			t.Errorf("HTML lacks %q:\n%s", want, msg.HTML)
		}
	}
	// The text survives as text: in the cells and in the plain body.
	rows := tableRows(t, msg.HTML)
	if rows[1][4] != addr+":25433" || rows[2][0] != uid {
		t.Errorf("rows %q", rows)
	}
	if !strings.Contains(msg.Plain, uid) || !strings.Contains(msg.Plain, addr) {
		t.Errorf("plain:\n%s", msg.Plain)
	}
}

func TestDBStatusErrors(t *testing.T) {
	svc, fake := newStolonService(t, stolonCapture(t, "normal", nil))
	d := &DBStatus{Stolon: svc}

	// A mistyped name is a usage error suggesting the closest one.
	_, err := d.Run(t.Context(), &Request{Invocation: Invocation{Args: []string{"mian"}}})
	var usage *UsageError
	if !errors.As(err, &usage) || usage.Msg != `unknown Stolon cluster "mian" (did you mean "main"?); configured: main, analytics` {
		t.Errorf("mistyped: %v", err)
	}
	// A configured cluster whose keys are not there says where it looked.
	_, err = d.Run(t.Context(), &Request{Invocation: Invocation{Args: []string{"analytics"}}})
	if err == nil || err.Error() != "no Stolon cluster at stolon/cluster/analytics/clusterdata (check the cluster name and store prefix)" {
		t.Errorf("no keys: %v", err)
	}
	// Consul down: the error names its address.
	fake.Stop()
	_, err = d.Run(t.Context(), &Request{Invocation: Invocation{Args: []string{"main"}}})
	if err == nil || !strings.HasPrefix(err.Error(), "Consul at "+fake.URL+" is unreachable: ") || errors.As(err, &usage) {
		t.Errorf("Consul down: %v", err)
	}
	// Refused: the error says which ACL the token needs.
	svc, fake = newStolonService(t, stolonCapture(t, "normal", nil))
	fake.SetToken("management")
	svc.Clusters()[0].KV.Token = "stolon-reader" // unknown to Consul
	_, err = (&DBStatus{Stolon: svc}).Run(t.Context(), &Request{Invocation: Invocation{Args: []string{"main"}}})
	if err == nil || !strings.Contains(err.Error(), "refused to read stolon/cluster/main/ (403)") ||
		!strings.Contains(err.Error(), `key_prefix "stolon/cluster/main/" { policy = "read" }`) {
		t.Errorf("refused: %v", err)
	}
}

// newStolonFixture runs db status and failover through a router, for
// user alice, with carol an approver and the two-person rule on.
func newStolonFixture(t *testing.T, svc *stolon.Service) *confirmFixture {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &confirmFixture{routerFixture: &routerFixture{st: st, metrics: telemetry.NewMetrics()},
		pol: &policy{allowed: map[string]bool{"@alice:x": true, "@carol:x": true}, approvers: map[string]bool{"@carol:x": true}, twoPerson: true},
		now: clock.NewManual(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))}
	reg, err := NewRegistry(&DBStatus{Stolon: svc}, &Failover{Stolon: svc, Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f.router = NewRouter(RouterConfig{Registry: reg, Replies: outbox.New(st), Seen: st, Audit: st, Authorizer: f.pol,
		Metrics: f.metrics, MaxReplyBytes: 16000, MutationsPerMin: 10, AuditTransport: "test", AuditRoom: "!audit", Clock: f.now})
	return f
}

// Through the router, as the room sees it.
func TestDBStatusReplies(t *testing.T) {
	svc, fake := newStolonService(t, stolonCapture(t, "normal", nil))
	f := newStolonFixture(t, svc)
	msgs := f.say(t, "@alice:x", "db status main")
	if len(msgs) != 1 || !strings.HasPrefix(msgs[0].Plain, "Stolon main: phase normal, master keeper0") ||
		!strings.Contains(msgs[0].HTML, "<th>ELECTABLE</th>") {
		t.Fatalf("db status main:\n%s", plains(msgs))
	}
	out := plains(f.say(t, "@alice:x", "db status mian"))
	if !strings.Contains(out, `⚠️ unknown Stolon cluster "mian" (did you mean "main"?); configured: main, analytics. Usage: !vigie db status [cluster]`) {
		t.Errorf("mistyped:\n%s", out)
	}
	fake.Stop()
	out = plains(f.say(t, "@alice:x", "db status main"))
	if !strings.Contains(out, "⚠️ db status failed: Consul at "+fake.URL+" is unreachable") {
		t.Errorf("Consul down:\n%s", out)
	}
}
