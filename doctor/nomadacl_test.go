package doctor

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigie/vigie/config"
)

// shippedPolicies are the Nomad policies of deploy/acl, by name.
func shippedPolicies(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("../deploy/acl/nomad-*.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/acl/nomad-*.hcl: %v", err)
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out["vigie-"+strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "nomad-"), ".hcl")] = string(b)
	}
	return out
}

func TestShippedPoliciesGrantWhatTheDoctorChecks(t *testing.T) {
	pols := shippedPolicies(t)
	cfg := config.Default()
	for _, u := range nomadUses(cfg) {
		acl := newNomadACL()
		if err := acl.add("vigie-watch", pols["vigie-watch"]); err != nil {
			t.Fatal(err)
		}
		needs, node := u.needs, u.node
		if u.name == "acl: reads" {
			needs, node = readNeeds(u.commands)
		} else if err := acl.add(policyFile(u), pols["vigie-"+policyFile(u)]); err != nil {
			t.Fatal(err)
		}
		for _, n := range needs {
			if !acl.allows("default", n.anyOf) || !acl.allows("prod", n.anyOf) {
				t.Errorf("%s: vigie-watch and nomad-%s.hcl do not grant %s", u.name, policyFile(u), n.label)
			}
		}
		if node && !acl.nodeRead() {
			t.Errorf("%s: no node read", u.name)
		}
	}
	// Without its own policy, a change command is refused.
	acl := newNomadACL()
	if err := acl.add("vigie-watch", pols["vigie-watch"]); err != nil {
		t.Fatal(err)
	}
	for _, c := range []capNeed{needSubmitJob, need("scale-job"), need("alloc-lifecycle")} {
		if acl.allows("default", c.anyOf) {
			t.Errorf("vigie-watch alone grants %s", c.label)
		}
	}
}

func TestNomadACLSemantics(t *testing.T) {
	acl := newNomadACL()
	err := acl.add("a", `
# comment
namespace "*" {
  policy = "read"
}
namespace "prod-*" { capabilities = ["read-job", "scale-job"] } // finer glob
namespace "secret" {
  policy = "deny"
}
/* a block
   comment */
node { policy = "read" }
`)
	if err != nil {
		t.Fatal(err)
	}
	if err := acl.add("b", `{"namespace": {"default": {"capabilities": ["alloc-lifecycle"]}}, "node": {"policy": "deny"}}`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ns, cap string
		want    bool
	}{
		{"default", "alloc-lifecycle", true},
		{"default", "read-job", false}, // the exact block replaces "*"
		{"other", "read-job", true},
		{"other", "submit-job", false},
		{"prod-eu", "scale-job", true},
		{"prod-eu", "list-jobs", false}, // the closest glob wins
		{"secret", "read-job", false},
		{"*", "list-jobs", true},
	} {
		if got := acl.allows(tc.ns, [][]string{{tc.cap}}); got != tc.want {
			t.Errorf("%s in %q: %v, want %v", tc.cap, tc.ns, got, tc.want)
		}
	}
	if acl.nodeRead() {
		t.Error("node deny must win")
	}
	if got := acl.exactNamespaces(); strings.Join(got, ",") != "default,secret" {
		t.Errorf("exact namespaces %v", got)
	}
	for _, bad := range []string{`namespace "x" {`, `namespace "x" { policy = "read" `, `policy = `, `x = "unterminated`, `{"namespace": `} {
		if err := newNomadACL().add("bad", bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// fakeNomadACL serves a token, its policies and a role.
func fakeNomadACL(t *testing.T, token map[string]any, policies map[string]string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/status/leader":
			w.Write([]byte(`"127.0.0.1:4647"`))
		case r.URL.Path == "/v1/acl/token/self":
			if token == nil {
				w.WriteHeader(http.StatusBadRequest)
				w.Write([]byte("ACL support disabled"))
				return
			}
			json.NewEncoder(w).Encode(token)
		case r.URL.Path == "/v1/acl/role/r1":
			w.Write([]byte(`{"ID":"r1","Name":"deployers","Policies":[{"Name":"vigie-deploy"}]}`))
		case strings.HasPrefix(r.URL.Path, "/v1/acl/policy/"):
			rules, ok := policies[strings.TrimPrefix(r.URL.Path, "/v1/acl/policy/")]
			if !ok {
				http.Error(w, "ACL policy not found", http.StatusNotFound)
				return
			}
			json.NewEncoder(w).Encode(map[string]string{"Rules": rules})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func runNomad(t *testing.T, cfg *config.Config) map[string]Outcome {
	t.Helper()
	p := &Plan{}
	nomadChecks(p, cfg, nil)
	out := map[string]Outcome{}
	for _, o := range Run(t.Context(), p.Checks, Options{}, nil) {
		out[o.Check] = o
	}
	return out
}

func nomadConfig(addr string, commands ...string) *config.Config {
	cfg := config.Default()
	cfg.Nomad.Address, cfg.Nomad.Token = addr, config.NewSecret("nomad-secret-token", "test")
	cfg.Nomad.Topics = []string{"Job"} // the stream check is the integration test's
	cfg.Nomad.Watch = false
	cfg.Policy.Rules = []config.PolicyRule{{Commands: commands, Groups: []string{"cn=ops,dc=example,dc=org"}}}
	return cfg
}

func TestNomadCapabilities(t *testing.T) {
	pols := shippedPolicies(t)
	s := fakeNomadACL(t, map[string]any{"Name": "vigie", "Type": "client", "Policies": []string{"vigie-watch", "vigie-scale"},
		"Roles": []map[string]string{{"ID": "r1", "Name": "deployers"}}}, pols)
	cfg := nomadConfig(s.URL, "status", "jobs", "deploy", "scale", "restart")
	out := runNomad(t, cfg)
	for name, want := range map[string]string{
		"reachable":     "ok leader 127.0.0.1:4647",
		"token":         `ok token "vigie" (client; policies vigie-watch, vigie-scale; roles deployers)`,
		"acl: reads":    `ok status, jobs allowed in namespace "default"`,
		"acl: deploy":   "ok deploy allowed",
		"acl: scale":    "ok scale allowed",
		"acl: restart":  `FAIL the token lacks alloc-lifecycle in namespace "default", which restart need(s): add the policy of deploy/acl/nomad-restart.hcl to it`,
		"tls":           "ok plain http on the loopback interface",
		"acl: rollback": "",
	} {
		o, ok := out[name]
		if want == "" {
			if ok {
				t.Errorf("%s: a line although no rule allows it: %s", name, o.Detail)
			}
			continue
		}
		status, detail, _ := strings.Cut(want, " ")
		if !ok || o.Status.String() != status || !strings.Contains(o.Detail, detail) {
			t.Errorf("%s: %s %q, want %s %q", name, o.Status, o.Detail, status, detail)
		}
	}
	for _, o := range out {
		if strings.Contains(o.Detail, "nomad-secret-token") {
			t.Errorf("the token leaks: %s", o.Detail)
		}
	}

	// A policy that cannot be read: no verdict on capabilities.
	s = fakeNomadACL(t, map[string]any{"Name": "vigie", "Type": "client", "Policies": []string{"gone"}}, pols)
	out = runNomad(t, nomadConfig(s.URL, "deploy"))
	if o := out["token"]; o.Status != StatusWarn || !strings.Contains(o.Detail, "cannot read policy gone (404") {
		t.Errorf("unreadable policy: %s %q", o.Status, o.Detail)
	}
	if o := out["acl: deploy"]; o.Status != StatusSkip || !strings.Contains(o.Detail, "see the token line") {
		t.Errorf("unreadable policy, deploy: %s %q", o.Status, o.Detail)
	}

	// ACLs disabled.
	s = fakeNomadACL(t, nil, nil)
	out = runNomad(t, nomadConfig(s.URL, "deploy"))
	if o := out["token"]; o.Status != StatusWarn || !strings.Contains(o.Detail, "ACLs are disabled") {
		t.Errorf("ACLs disabled: %s %q", o.Status, o.Detail)
	}
	if o := out["acl: deploy"]; o.Status != StatusSkip {
		t.Errorf("ACLs disabled, deploy: %s %q", o.Status, o.Detail)
	}

	// Unused: no line but one skip.
	cfg = nomadConfig(s.URL)
	cfg.Policy.Rules = nil
	out = runNomad(t, cfg)
	if o := out["cluster"]; len(out) != 1 || o.Status != StatusSkip {
		t.Errorf("unused Nomad: %+v", out)
	}
}

func TestNomadUnreachable(t *testing.T) {
	s := httptest.NewServer(http.NotFoundHandler())
	addr := s.URL
	s.Close()
	out := runNomad(t, nomadConfig(addr, "deploy"))
	if o := out["reachable"]; o.Status != StatusFail || !strings.Contains(o.Detail, "is unreachable") || !strings.Contains(o.Detail, "check nomad.address") {
		t.Errorf("reachable: %s %q", o.Status, o.Detail)
	}
	if o := out["acl: deploy"]; o.Status != StatusSkip {
		t.Errorf("acl: %s %q", o.Status, o.Detail)
	}
}
