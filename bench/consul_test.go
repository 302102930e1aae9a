//go:build linux

package bench

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/watchers"
)

var (
	consulChecks  = flag.Int("consul.checks", 10000, "checks in the Consul health state of BenchmarkConsulHealth")
	consulUpdates = flag.Int("consul.updates", 20, "one-check changes per iteration of BenchmarkConsulHealth")
)

// Environment of TestConsulChild.
const (
	envConsulURL  = "VIGIE_CONSUL_URL"  // the fake Consul; set by the benchmark
	envConsulData = "VIGIE_CONSUL_DATA" // the data directory; set by the benchmark
	// Set by whoever runs the benchmark: files the child writes its CPU
	// profile (over the measured updates) and its heap profile (after
	// them) to.
	envConsulCPUProfile = "VIGIE_CONSUL_CPUPROFILE"
	envConsulMemProfile = "VIGIE_CONSUL_MEMPROFILE"
)

// consulMinInterval replaces the watcher's default of 2 s between two
// queries (consul.min_interval), which would otherwise be what the
// benchmark measures.
const consulMinInterval = time.Millisecond

// checkRef names a check in Consul.
type checkRef struct {
	node, id, output string
}

// checksPerNode: serfHealth, the Nomad client's HTTP check, and 48
// checks of services Nomad registered.
const checksPerNode = 50

// generateChecks returns the body of GET /v1/health/state/any for n
// passing checks, every one with the field set of the captured ones
// (fakeconsul.StateBefore) and built from one of them: per node, serfHealth,
// the Nomad client's HTTP check and checks of services registered by Nomad
// (HTTP, TCP and TTL, as captured), sorted as Consul sorts them; and the
// service checks, the ones the benchmark turns critical and back.
func generateChecks(tb testing.TB, n int) ([]byte, []checkRef) {
	tb.Helper()
	var captured []map[string]json.RawMessage
	if err := json.Unmarshal(fakeconsul.StateBefore(), &captured); err != nil {
		tb.Fatal(err)
	}
	template := func(field, value string) map[string]json.RawMessage {
		for _, c := range captured {
			var v string
			if json.Unmarshal(c[field], &v) == nil && v == value {
				return c
			}
		}
		tb.Fatalf("no captured check with %s %q", field, value)
		return nil
	}
	serf := template("CheckID", "serfHealth")
	client := template("Name", "Nomad Client HTTP Check")
	services := []map[string]json.RawMessage{
		template("Name", "Nomad Server HTTP Check"), // http
		template("Name", "Nomad Server RPC Check"),  // tcp
		template("Name", "web-alive"),               // ttl
	}
	hash := func(s string) string {
		sum := sha1.Sum([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	uuid := func(s string) string {
		h := hash(s)
		return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	}
	mk := func(tmpl map[string]json.RawMessage, fields map[string]any) map[string]json.RawMessage {
		c := maps.Clone(tmpl)
		for k, v := range fields {
			if _, ok := c[k]; !ok {
				tb.Fatalf("field %s is not one of a captured check", k)
			}
			b, err := json.Marshal(v)
			if err != nil {
				tb.Fatal(err)
			}
			c[k] = b
		}
		return c
	}
	const serviceNames = 120
	checks := make([]map[string]json.RawMessage, 0, n)
	var flips []checkRef
	for node := 0; len(checks) < n; node++ {
		name := fmt.Sprintf("node-%04d", node)
		ip := fmt.Sprintf("10.%d.%d.%d", 1+node/65536, node/256%256, node%256)
		index := 1000 + node*checksPerNode
		checks = append(checks, mk(serf, map[string]any{"Node": name, "CreateIndex": index, "ModifyIndex": index}))
		if len(checks) < n {
			id := "_nomad-check-" + hash(name+"/client")
			checks = append(checks, mk(client, map[string]any{"Node": name, "CheckID": id,
				"ServiceID":   "_nomad-client-" + hash(name)[:32],
				"Output":      "HTTP GET http://" + ip + ":4646/v1/agent/health?type=client: 200 OK Output: {\"client\":{\"message\":\"ok\",\"ok\":true}}",
				"CreateIndex": index + 1, "ModifyIndex": index + 1}))
		}
		for j := 0; j < checksPerNode-2 && len(checks) < n; j++ {
			svc := fmt.Sprintf("svc-%03d", (node*(checksPerNode-2)+j)%serviceNames)
			alloc := uuid(fmt.Sprintf("%s/%d", name, j))
			port := 20000 + j
			id := "_nomad-check-" + hash(fmt.Sprintf("%s/%d/check", name, j))
			fields := map[string]any{"Node": name, "CheckID": id, "ServiceName": svc,
				"ServiceID":   fmt.Sprintf("_nomad-task-%s-%s-%s-http", alloc, svc, svc),
				"ServiceTags": []string{"v1", "traefik.enable=true"},
				"CreateIndex": index + 2 + j, "ModifyIndex": index + 2 + j}
			tmpl := services[j%len(services)]
			var output string
			switch j % len(services) {
			case 0:
				output = fmt.Sprintf("HTTP GET http://%s:%d/health: 200 OK Output: ok", ip, port)
				fields["Name"] = "service: \"" + svc + "\" check"
			case 1:
				output = fmt.Sprintf("TCP connect %s:%d: Success", ip, port)
				fields["Name"] = "service: \"" + svc + "\" tcp check"
			default:
				output = "heartbeat ok"
				fields["Name"] = svc + "-alive"
			}
			fields["Output"] = output
			checks = append(checks, mk(tmpl, fields))
			flips = append(flips, checkRef{node: name, id: id, output: output})
		}
	}
	str := func(c map[string]json.RawMessage, k string) string {
		var s string
		_ = json.Unmarshal(c[k], &s)
		return strings.ToLower(s)
	}
	// Consul's order (its memdb "id" index): node, then check ID.
	slices.SortStableFunc(checks, func(a, b map[string]json.RawMessage) int {
		if c := strings.Compare(str(a, "Node"), str(b, "Node")); c != 0 {
			return c
		}
		return strings.Compare(str(a, "CheckID"), str(b, "CheckID"))
	})
	body, err := json.Marshal(checks)
	if err != nil {
		tb.Fatal(err)
	}
	// Spread the flips over nodes and services: a stride coprime with
	// their count.
	stride := 7919 % max(len(flips), 1)
	for stride > 1 && gcd(stride, len(flips)) != 1 {
		stride++
	}
	spread := make([]checkRef, len(flips))
	for i := range flips {
		spread[i] = flips[i*max(stride, 1)%len(flips)]
	}
	return body, spread
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// BenchmarkConsulHealth measures Vigie's pipeline on a large Consul: a
// health state of -consul.checks checks (10,000) served by fakeconsul to
// the real Consul watcher, engine, store and outbox sender wired as
// cmd/vigie wires them (consul.min_interval 1 ms instead of 2 s), in a
// child process (TestConsulChild). Each iteration makes -consul.updates
// (20) one-check changes, a service check turned critical, then back to
// passing, rotating over the service checks, each waited for until the
// engine has committed the snapshot it causes. Reported per response:
// wall time from the change to the commit (ms/response: the fake's answer
// included, fake-ms/response measures it alone) and the child's CPU time
// (cpu-ms/response).
//
//	go test -tags goolm -run '^$' -bench 'ConsulHealth' -benchtime 1x -count 3 ./bench
//
// Set VIGIE_CONSUL_CPUPROFILE (and VIGIE_CONSUL_MEMPROFILE) to an absolute
// path for the child's profiles.
func BenchmarkConsulHealth(b *testing.B) {
	if *consulUpdates < 1 {
		b.Fatalf("-consul.updates must be at least 1")
	}
	fake := fakeconsul.New()
	b.Cleanup(fake.Close)
	body, flips := generateChecks(b, *consulChecks)
	if len(flips) == 0 {
		b.Fatalf("-consul.checks %d leaves no service check to change", *consulChecks)
	}
	if err := fake.SetChecksJSON(fakeconsul.IndexBefore+1000, body); err != nil {
		b.Fatal(err)
	}
	fakeMS := fakeAnswerMS(b, fake.URL, 3)

	c := startChild(b, "TestConsulChild", envConsulURL+"="+fake.URL, envConsulData+"="+filepath.Join(b.TempDir(), "data"))
	deadline := time.Now().Add(*childTimeout)
	var ready childReady
	c.await(kindReady, &ready, deadline, nil)
	consumed := uint64(0)
	waitFor := func(index uint64) {
		c.goals[kindConsumed] = fmt.Sprintf("the commit of Consul index %d", index)
		for consumed < index {
			var p childProgress
			c.await(kindConsumed, &p, deadline, nil)
			consumed = max(consumed, p.Index)
		}
	}
	waitFor(fake.Index()) // the first snapshot: everything new to the pipeline
	c.send("mark")
	c.await(kindMarked, nil, deadline, nil)

	n := b.N * *consulUpdates
	latencies := make([]time.Duration, 0, n)
	var updating time.Duration
	b.ResetTimer()
	for i := range n {
		ref := flips[i/2%len(flips)]
		status, output := api.HealthCritical, "HTTP GET failed: 503 Service Unavailable Output: down"
		if i%2 == 1 {
			status, output = api.HealthPassing, ref.output
		}
		start := time.Now()
		if err := fake.UpdateCheck(ref.node, ref.id, status, output); err != nil {
			b.Fatal(err)
		}
		updating += time.Since(start)
		waitFor(fake.Index())
		latencies = append(latencies, time.Since(start))
	}
	b.StopTimer()
	c.send("end")
	var res childResult
	c.await(kindResult, &res, time.Now().Add(2*time.Minute), nil)
	c.stop()

	var sum time.Duration
	for _, l := range latencies {
		sum += l
	}
	slices.Sort(latencies)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	perResponse := ms(sum) / float64(n)
	cpuPer := res.CPUSeconds * 1000 / float64(n)
	b.ReportMetric(perResponse, "ms/response")
	b.ReportMetric(cpuPer, "cpu-ms/response")
	b.ReportMetric(ms(latencies[len(latencies)/2]), "p50-ms")
	b.ReportMetric(ms(latencies[len(latencies)-1]), "max-ms")
	b.ReportMetric(fakeMS, "fake-ms/response")
	b.ReportMetric(kib2mib(res.PeakRSSKiB), "peak-rss-MiB")
	b.ReportMetric(kib2mib(res.BaselineRSSKiB), "base-rss-MiB")
	b.ReportMetric(kib2mib(res.IdleRSSKiB), "idle-rss-MiB")
	b.Logf("consul health: %d checks (%.1f MB a response), %d one-check changes, %d snapshots committed (%d events): %.1f ms/response (p50 %.1f, max %.1f; the fake's answer alone %.1f ms, its UpdateCheck %.1f ms), %.1f ms CPU/response; RSS peak %.1f MiB, baseline %.1f MiB, idle %.1f MiB; %d messages",
		*consulChecks, float64(len(body))/1e6, n, res.Batches, res.Events, perResponse, ms(latencies[len(latencies)/2]), ms(latencies[len(latencies)-1]),
		fakeMS, ms(updating)/float64(n), cpuPer, kib2mib(res.PeakRSSKiB), kib2mib(res.BaselineRSSKiB), kib2mib(res.IdleRSSKiB), res.Messages)
}

// fakeAnswerMS is the mean time of a plain read of the whole state from
// the fake, body read but not decoded: the server's share of a response.
func fakeAnswerMS(b *testing.B, url string, times int) float64 {
	var total time.Duration
	for range times {
		start := time.Now()
		resp, err := http.Get(url + "/v1/health/state/any")
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	return float64(total.Microseconds()) / 1000 / float64(times)
}

// TestConsulChild is the child of BenchmarkConsulHealth; it runs only
// when the benchmark starts it. It says each snapshot committed; "mark"
// starts the measured span, "end" ends it.
func TestConsulChild(t *testing.T) {
	url := childEnv(t, envConsulURL)
	runChild(t, os.Getenv(envConsulData), envConsulCPUProfile, envConsulMemProfile,
		func(ctx context.Context, c *childSide, p *pipeline, cmds <-chan string) *observer {
			obs := newObserver(p.engine, "consul", 0, 0)
			obs.onCommit = func(b watchers.Batch) {
				c.say(kindConsumed, childProgress{Index: b.Cursor.Index, Events: int64(len(b.Events))})
			}
			cc := p.cfg.Consul
			w := watchers.NewConsul(watchers.ConsulConfig{Address: url, Datacenter: cc.Datacenter, Token: cc.Token.Reveal(),
				Wait: cc.Wait.Duration, MinInterval: consulMinInterval})
			p.watch(ctx, obs, w)
			for {
				select {
				case cmd := <-cmds:
					switch cmd {
					case "mark":
						c.startCPUProfile()
						obs.markStart()
						c.say(kindMarked, obs.progress())
					case "end":
						obs.markEnd()
						return obs
					default:
						c.fail("unknown command %q", cmd)
					}
				case <-ctx.Done():
					c.fail("no end before the child's deadline: %v", ctx.Err())
				}
			}
		})
}

// TestGenerateChecks checks the generated state against the capture: the
// same fields in every check, readable as Consul's API reads them, unique
// and in Consul's order.
func TestGenerateChecks(t *testing.T) {
	body, flips := generateChecks(t, 1000)
	var captured, got []map[string]json.RawMessage
	if err := json.Unmarshal(fakeconsul.StateBefore(), &captured); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(maps.Keys(captured[0]))
	seen := map[string]bool{}
	for i, c := range got {
		if keys := slices.Sorted(maps.Keys(c)); !slices.Equal(keys, want) {
			t.Fatalf("check %d has fields %v, want %v", i, keys, want)
		}
		var hc api.HealthCheck
		if err := json.Unmarshal(c["Node"], &hc.Node); err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal(c["CheckID"], &hc.CheckID)
		if seen[hc.Node+"/"+hc.CheckID] {
			t.Fatalf("check %s/%s twice", hc.Node, hc.CheckID)
		}
		seen[hc.Node+"/"+hc.CheckID] = true
	}
	var checks []api.HealthCheck
	if err := json.Unmarshal(body, &checks); err != nil {
		t.Fatal(err)
	}
	if len(checks) != 1000 || len(flips) != 1000-2*1000/checksPerNode {
		t.Fatalf("%d checks, %d service checks", len(checks), len(flips))
	}
	distinct := map[checkRef]bool{}
	for _, f := range flips {
		distinct[f] = true
	}
	if len(distinct) != len(flips) {
		t.Errorf("the rotation repeats checks: %d distinct of %d", len(distinct), len(flips))
	}
	fake := fakeconsul.New()
	defer fake.Close()
	if err := fake.SetChecksJSON(fakeconsul.IndexBefore+1, body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(fake.URL + "/v1/health/state/any")
	if err != nil {
		t.Fatal(err)
	}
	served, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if string(served) != string(body) {
		t.Errorf("the fake reorders the generated state: not in Consul's order")
	}
}
