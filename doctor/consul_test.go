package doctor

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/stolon"
)

// A token that may read the Stolon cluster's keys but not write them, nor
// touch the HA lock or sessions: the lines that need more say which rule
// to add, and nothing is written.
func TestConsulTokenScopes(t *testing.T) {
	consul := fakeconsul.New()
	t.Cleanup(consul.Close)
	if err := consul.LoadKV(fakeconsul.StolonState("normal")); err != nil {
		t.Fatal(err)
	}
	consul.SetToken("management-token")
	consul.SetKVPrefixes("reader-token", false, "stolon/cluster/main/")
	consul.SetSessionPrefixes("reader-token", false, "")
	before := consul.KVIndex()

	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Nomad.Watch, cfg.Consul.Watch = false, false
	cfg.Consul.Address, cfg.Consul.Token = consul.URL, config.NewSecret("reader-token", "test")
	cfg.HA.Enabled, cfg.HA.LockKey, cfg.HA.Instance = true, "vigie/leader", "a"
	cfg.Stolon.Clusters = []config.StolonCluster{{Name: "main", StorePrefix: "stolon/cluster", Database: "postgres",
		Postgres: config.PGServer{Host: "127.0.0.1", Port: 1, User: "stolon", SSLMode: "disable"}}}
	cfg.Policy.Rules = []config.PolicyRule{{Commands: []string{"failover"}, Groups: []string{"cn=ops,dc=example,dc=org"}}}
	clusters := []*stolon.Cluster{{Name: "main", StorePrefix: "stolon/cluster", Database: "postgres",
		KV: &stolon.KV{Address: consul.URL, Token: "reader-token", Client: &http.Client{}}}}

	p := &Plan{}
	consulChecks(p, cfg, nil)
	stolonChecks(p, cfg, clusters)
	rows := map[string]Outcome{}
	for _, o := range Run(t.Context(), p.Checks, Options{Timeout: 5 * time.Second}, nil) {
		rows[o.Check] = o
	}
	for name, want := range map[string]string{
		"reachable":            "ok",
		"main keys":            "ok stolon/cluster/main/: master keeper keeper0",
		"main failover write":  `FAIL lacks permission 'key:write' on "stolon/cluster/main/clusterdata"): the token needs key_prefix "stolon/cluster/main/" { policy = "write" }`,
		"ha lock vigie/leader": `FAIL Consul refused to read vigie/leader`,
		"ha session":           `FAIL Consul refused to create a session`,
		"main postgres":        "FAIL through the proxy",
	} {
		status, detail, _ := strings.Cut(want, " ")
		o, ok := rows[name]
		if !ok || o.Status.String() != status || !strings.Contains(o.Detail, detail) {
			t.Errorf("%s: %s %q, want %s %q", name, o.Status, o.Detail, status, detail)
		}
	}
	if consul.KVIndex() != before {
		t.Error("the checks wrote to the KV store")
	}
}
