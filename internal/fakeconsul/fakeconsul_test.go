package fakeconsul

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

type answer struct {
	status int
	header http.Header
	body   string
	took   time.Duration
}

func get(t *testing.T, url string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b), time.Since(start)}
}

func checks(t *testing.T, a answer) []api.HealthCheck {
	t.Helper()
	var hc []api.HealthCheck
	if err := json.Unmarshal([]byte(a.body), &hc); err != nil {
		t.Fatalf("body %q: %v", a.body, err)
	}
	return hc
}

func find(hc []api.HealthCheck, checkID string) *api.HealthCheck {
	for i := range hc {
		if hc[i].CheckID == checkID {
			return &hc[i]
		}
	}
	return nil
}

func TestIndexesMatchCapturedHeaders(t *testing.T) {
	for file, want := range map[string]string{
		"testdata/health-state-any-before.headers":     "X-Consul-Index: 48\n",
		"testdata/health-state-any-blocking-1.headers": "X-Consul-Index: 50\n",
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.ReplaceAll(string(b), "\r", ""), want) {
			t.Errorf("%s lacks %q", file, want)
		}
	}
	if IndexBefore != 48 || IndexTTLExpired != 50 {
		t.Fatal("constants drifted from the captures")
	}
}

func TestServesCapturedState(t *testing.T) {
	f := New()
	defer f.Close()
	a := get(t, f.URL+"/v1/health/state/any")
	if a.status != 200 || a.header.Get("X-Consul-Index") != "48" || a.header.Get("X-Consul-Knownleader") != "true" ||
		a.header.Get("X-Consul-Lastcontact") != "0" || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, headers %v", a.status, a.header)
	}
	var got, want any
	if err := json.Unmarshal([]byte(a.body), &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(StateBefore(), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("served state differs from the capture:\n%s", a.body)
	}
	if p := get(t, f.URL+"/v1/health/state/any?pretty"); !strings.Contains(p.body, "\n    {\n        \"CheckID\"") {
		t.Fatalf("?pretty not indented as Consul does:\n%.200s", p.body)
	}
	if c := checks(t, get(t, f.URL+"/v1/health/state/critical")); len(c) != 0 {
		t.Fatalf("critical before the TTL expired: %+v", c)
	}
	// Consul does not validate the state: an unknown one matches nothing.
	if a := get(t, f.URL+"/v1/health/state/bogus"); a.status != 200 || a.body != "[]" {
		t.Fatalf("unknown state: %d %q", a.status, a.body)
	}
}

func TestBlockingQuery(t *testing.T) {
	f := New()
	defer f.Close()

	// index=0 never blocks, whatever the wait.
	if a := get(t, f.URL+"/v1/health/state/any?index=0&wait=5s"); a.took > time.Second {
		t.Fatalf("index=0 blocked %s", a.took)
	}

	// A change returns a blocked query at once, with the new index.
	go func() {
		time.Sleep(50 * time.Millisecond)
		f.ExpireTTL()
	}()
	a := get(t, f.URL+"/v1/health/state/any?index=48&wait=10s")
	if a.header.Get("X-Consul-Index") != "50" || a.took > 5*time.Second {
		t.Fatalf("index %s after %s", a.header.Get("X-Consul-Index"), a.took)
	}
	ttl := find(checks(t, a), "chatops-ttl")
	if ttl == nil || ttl.Status != "critical" || ttl.Output != "TTL expired (last output before timeout follows): heartbeat ok" {
		t.Fatalf("chatops-ttl %+v", ttl)
	}
	if c := checks(t, get(t, f.URL+"/v1/health/state/critical")); len(c) != 1 || c[0].CheckID != "chatops-ttl" {
		t.Fatalf("critical: %+v", c)
	}

	// No change: the wait elapses (plus at most wait/16) and the index stays.
	a = get(t, f.URL+"/v1/health/state/any?index=50&wait=200ms")
	if a.header.Get("X-Consul-Index") != "50" || a.took < 200*time.Millisecond || a.took > 200*time.Millisecond+time.Second {
		t.Fatalf("unchanged: index %s after %s", a.header.Get("X-Consul-Index"), a.took)
	}

	// A client ahead of the server (after a restore) waits, then sees the lower index.
	a = get(t, f.URL+"/v1/health/state/any?index=900&wait=100ms")
	if a.header.Get("X-Consul-Index") != "50" || a.took < 100*time.Millisecond {
		t.Fatalf("ahead: index %s after %s", a.header.Get("X-Consul-Index"), a.took)
	}

	// A restore to a lower index abandons blocked queries at once.
	go func() {
		time.Sleep(50 * time.Millisecond)
		if err := f.SetChecksJSON(30, StateBefore()); err != nil {
			t.Error(err)
		}
	}()
	a = get(t, f.URL+"/v1/health/state/any?index=50&wait=10s")
	if a.header.Get("X-Consul-Index") != "30" || a.took > 5*time.Second {
		t.Fatalf("restore: index %s after %s", a.header.Get("X-Consul-Index"), a.took)
	}

	// An update bumps the index and the check's ModifyIndex.
	if err := f.UpdateCheck("vm", "serfHealth", "critical", "Agent not live or unreachable"); err != nil {
		t.Fatal(err)
	}
	a = get(t, f.URL+"/v1/health/state/any?index=30&wait=10s")
	if s := find(checks(t, a), "serfHealth"); a.header.Get("X-Consul-Index") != "31" || s.Status != "critical" || s.ModifyIndex != 31 || s.CreateIndex != 13 {
		t.Fatalf("update: index %s, %+v", a.header.Get("X-Consul-Index"), s)
	}
	if err := f.UpdateCheck("vm", "nope", "critical", ""); err == nil {
		t.Fatal("updating an unknown check succeeded")
	}
}

func TestCloseReleasesBlockedQueries(t *testing.T) {
	f := New()
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(f.URL + "/v1/health/state/any?index=48&wait=1m")
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("answered %s", resp.Status)
		}
		done <- err
	}()
	for len(f.Requests()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	f.Close()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("blocked query got %v, want the connection dropped (EOF)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close left a blocked query hanging")
	}
}

func TestParametersAsConsul(t *testing.T) {
	f := New()
	defer f.Close()
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/v1/health/state/", 400, "Missing check state"},
		{"/v1/health/state/any?wait=soon", 400, "Invalid wait time"},
		{"/v1/health/state/any?index=-1", 400, "Invalid index"},
		{"/v1/health/state/any?stale&consistent", 400, "Cannot specify ?stale with ?consistent, conflicting semantics."},
		{"/v1/health/state/any?dc=dc2", 500, "No path to datacenter"},
	} {
		if a := get(t, f.URL+tc.path); a.status != tc.status || a.body != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.path, a.status, a.body, tc.status, tc.body)
		}
	}
	if a := get(t, f.URL+"/v1/health/state/any?dc=dc1&stale"); a.status != 200 || a.header.Get("X-Consul-Effective-Consistency") != "stale" {
		t.Errorf("dc1 stale: %d %v", a.status, a.header)
	}
	resp, err := http.Post(f.URL+"/v1/health/state/any", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	rs := f.Requests()
	if len(rs) != 7 || rs[3].String() != "/v1/health/state/any?stale&consistent" || rs[1].String() != "/v1/health/state/any?wait=soon" || rs[2].Index() != 0 {
		t.Errorf("requests %v", rs)
	}
}

func TestACL(t *testing.T) {
	f := New()
	defer f.Close()
	f.SetToken("s3cret")
	url := f.URL + "/v1/health/state/any"

	a := get(t, url) // the anonymous token reads nothing: 200, not 403
	if a.status != 200 || a.body != "[]" || a.header.Get("X-Consul-Default-Acl-Policy") != "deny" || a.header.Get("X-Consul-Index") != "48" {
		t.Fatalf("anonymous: %d %q %v", a.status, a.body, a.header)
	}
	if a := get(t, url, "X-Consul-Token", "wrong"); a.status != 403 || a.body != "ACL not found" {
		t.Fatalf("wrong token: %d %q", a.status, a.body)
	}
	for _, a := range []answer{
		get(t, url, "X-Consul-Token", "s3cret"),
		get(t, url+"?token=s3cret"),
		get(t, url, "Authorization", "Bearer s3cret"),
	} {
		if a.status != 200 || len(checks(t, a)) != 7 {
			t.Fatalf("right token: %d %q", a.status, a.body)
		}
	}
	if rs := f.Requests(); rs[1].Token != "wrong" || rs[3].Token != "s3cret" {
		t.Fatalf("tokens not logged: %+v", rs)
	}
	if a.header.Get("X-Consul-Results-Filtered-By-ACLs") != "" {
		t.Fatalf("a token that reads everything is told it was filtered: %v", a.header)
	}

	// A token that reads every node but only the nomad* services: the web
	// check is left out, node checks stay, and the header says so.
	f.SetScopedToken("nomad-only", "nomad")
	a = get(t, url, "X-Consul-Token", "nomad-only")
	got := checks(t, a)
	if a.status != 200 || len(got) != 6 || a.header.Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
		t.Fatalf("scoped token: %d %d checks %v", a.status, len(got), a.header)
	}
	for _, c := range got {
		if svc := c.ServiceName; svc != "" && !strings.HasPrefix(svc, "nomad") {
			t.Errorf("scoped token reads service %q", svc)
		}
	}
}

func TestMaintenanceShapes(t *testing.T) {
	f := New()
	defer f.Close()
	const web = "_nomad-task-4e41c0d4-8722-608b-bdb1-6a3e4cfd23ec-server-web-http"
	if err := f.AddMaintenance("vm", ""); err != nil {
		t.Fatal(err)
	}
	if err := f.AddMaintenance("vm", web); err != nil {
		t.Fatal(err)
	}
	if err := f.AddMaintenance("vm", ""); err != nil || f.Index() != 50 {
		t.Fatalf("second node maintenance: %v, index %d (must not change)", err, f.Index())
	}
	if err := f.AddMaintenance("vm", "nope"); err == nil || err.Error() != `No service registered with ID "nope"` {
		t.Fatalf("unknown service: %v", err)
	}
	hc := checks(t, get(t, f.URL+"/v1/health/state/critical"))
	if len(hc) != 2 {
		t.Fatalf("critical: %+v", hc)
	}
	node, svc := find(hc, "_node_maintenance"), find(hc, "_service_maintenance:"+web)
	if node == nil || node.Name != "Node Maintenance Mode" || node.ServiceID != "" || node.Type != "maintenance" || node.Output != "" ||
		node.Notes != "Maintenance mode is enabled for this node, but no reason was provided. This is a default message." || node.ServiceTags == nil {
		t.Errorf("node maintenance %+v", node)
	}
	if svc == nil || svc.Name != "Service Maintenance Mode" || svc.ServiceID != web || svc.ServiceName != "web" ||
		!reflect.DeepEqual(svc.ServiceTags, []string{"chatops", "v2"}) || svc.CreateIndex != 50 {
		t.Errorf("service maintenance %+v", svc)
	}
	f.RemoveMaintenance("vm", "")
	f.RemoveMaintenance("vm", web)
	f.RemoveMaintenance("vm", web) // already off: nothing happens
	if hc := checks(t, get(t, f.URL+"/v1/health/state/critical")); len(hc) != 0 || f.Index() != 52 {
		t.Fatalf("after removal: %+v, index %d", hc, f.Index())
	}
}

func TestInjectedFailures(t *testing.T) {
	f := New()
	defer f.Close()
	f.FailNext(2, 500)
	f.CorruptNext(1)
	url := f.URL + "/v1/health/state/any"
	for range 2 {
		if a := get(t, url); a.status != 500 || a.body != "No cluster leader" {
			t.Fatalf("%d %q", a.status, a.body)
		}
	}
	a := get(t, url)
	var v any
	if a.status != 200 || a.header.Get("X-Consul-Index") != "48" || json.Unmarshal([]byte(a.body), &v) == nil {
		t.Fatalf("corrupt: %d %q", a.status, a.body)
	}
	if a := get(t, url); a.status != 200 || len(checks(t, a)) != 7 {
		t.Fatalf("after failures: %d", a.status)
	}
}

func TestSetAndAddChecks(t *testing.T) {
	f := New()
	defer f.Close()
	f.SetChecks(60, []api.HealthCheck{{Node: "db1", CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing"}})
	f.AddCheck(api.HealthCheck{Node: "db1", CheckID: "pg", Status: "warning", ServiceID: "pg-1", ServiceName: "pg"})
	if err := f.RemoveCheck("db1", "serfHealth"); err != nil {
		t.Fatal(err)
	}
	a := get(t, f.URL+"/v1/health/state/any")
	hc := checks(t, a)
	if a.header.Get("X-Consul-Index") != "62" || len(hc) != 1 || hc[0].CheckID != "pg" || hc[0].CreateIndex != 61 || hc[0].ServiceTags == nil {
		t.Fatalf("index %s, %+v", a.header.Get("X-Consul-Index"), hc)
	}
}
