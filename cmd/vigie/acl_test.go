package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vigie/vigie/commands"
	"github.com/vigie/vigie/config"
)

// The ACL policies shipped in deploy/acl are what operators paste into
// Nomad and Consul: every change command has its Nomad policy, the README
// points at each file, and each file only uses rule names, dispositions
// and capabilities the servers accept (a typo there surfaces only when an
// operator applies it).
func TestACLPoliciesCoverEveryChange(t *testing.T) {
	const dir = "../../deploy/acl"
	reg, err := newRegistry(config.Default(), registryDeps{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.hcl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no policies in %s: %v", dir, err)
	}
	names := map[string]bool{}
	for _, f := range files {
		names[filepath.Base(f)] = true
	}
	want := []string{"nomad-watch.hcl", "consul-watch.hcl", "consul-snapshot.hcl", "consul-stolon.hcl", "consul-ha.hcl"}
	// The backup commands use S3 and PostgreSQL credentials, and for
	// snapshots a token of their own (consul-snapshot.hcl); failover,
	// Consul KV and PostgreSQL (consul-stolon.hcl); [ha], the leader lock
	// (consul-ha.hcl).
	notNomad := []string{"backup", "verify", "restore", "prune", "failover"}
	for _, s := range reg.Specs() {
		if s.Access == commands.Change && !slices.Contains(notNomad, s.Name) {
			want = append(want, "nomad-"+s.Name+".hcl")
		}
	}
	for _, w := range want {
		if !names[w] {
			t.Errorf("%s/%s is missing", dir, w)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range names {
		if !slices.Contains(want, name) {
			t.Errorf("%s/%s matches no change command", dir, name)
		}
		if !strings.Contains(string(readme), "deploy/acl/"+name) {
			t.Errorf("README.md does not point at deploy/acl/%s", name)
		}
		body, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		rules := nomadRules
		if strings.HasPrefix(name, "consul-") {
			rules = consulRules
		}
		for _, problem := range aclProblems(string(body), rules) {
			t.Errorf("%s: %s", name, problem)
		}
	}
}

// aclRules says, per rule block, which dispositions and capabilities the
// server accepts.
type aclRules map[string]struct{ policies, capabilities []string }

var nomadCapabilities = []string{ // Nomad's acl/policy.go, 1.11
	"deny", "list-jobs", "parse-job", "read-job", "submit-job", "dispatch-job", "read-logs", "read-fs",
	"alloc-exec", "alloc-node-exec", "alloc-lifecycle", "csi-register-plugin", "csi-write-volume",
	"csi-read-volume", "csi-list-volume", "csi-mount-volume", "list-scaling-policies",
	"read-scaling-policy", "read-job-scaling", "scale-job", "register-job", "revert-job", "plan-job",
	"promote-deployment",
}

var (
	nomadRules = aclRules{
		"namespace": {[]string{"deny", "read", "write", "scale"}, nomadCapabilities},
		"node":      {[]string{"deny", "read", "write"}, nil},
		"agent":     {[]string{"deny", "read", "write"}, nil},
		"operator":  {[]string{"deny", "read", "write"}, nil},
	}
	consulRules = aclRules{
		"acl":            {[]string{"deny", "read", "write"}, nil},
		"node_prefix":    {[]string{"deny", "read", "write"}, nil},
		"service_prefix": {[]string{"deny", "read", "write"}, nil},
		"key_prefix":     {[]string{"deny", "list", "read", "write"}, nil},
		"session_prefix": {[]string{"deny", "read", "write"}, nil},
	}
)

var (
	aclBlock        = regexp.MustCompile(`^([a-z_]+)(?:\s+"[^"]*")?\s*\{$`)
	aclPolicy       = regexp.MustCompile(`^policy\s*=\s*"([^"]*)"$`)
	aclTopLevel     = regexp.MustCompile(`^([a-z_]+)\s*=\s*"([^"]*)"$`)
	aclCapabilities = regexp.MustCompile(`^capabilities\s*=\s*\[(.*)\]$`)
)

// aclProblems checks a policy file line by line: it is written in the
// simple shape the files use (one block per rule, one setting per line).
func aclProblems(body string, rules aclRules) []string {
	var problems []string
	block := ""
	for n, line := range strings.Split(body, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		at := func(format string, args ...any) {
			problems = append(problems, fmt.Sprintf("line %d: ", n+1)+fmt.Sprintf(format, args...))
		}
		if m := aclBlock.FindStringSubmatch(line); m != nil {
			if block != "" {
				at("block %s opened inside %s", m[1], block)
			}
			if _, ok := rules[m[1]]; !ok {
				at("unknown rule %q", m[1])
			}
			block = m[1]
			continue
		}
		if line == "}" {
			if block == "" {
				at("unbalanced }")
			}
			block = ""
			continue
		}
		if m := aclTopLevel.FindStringSubmatch(line); m != nil && block == "" { // Consul's acl = "write"
			r, ok := rules[m[1]]
			switch {
			case !ok:
				at("unknown rule %q", m[1])
			case !slices.Contains(r.policies, m[2]):
				at("policy %q is not one of %v", m[2], r.policies)
			}
			continue
		}
		r, inBlock := rules[block]
		switch m, c := aclPolicy.FindStringSubmatch(line), aclCapabilities.FindStringSubmatch(line); {
		case !inBlock:
			at("%q outside a rule block", line)
		case m != nil:
			if !slices.Contains(r.policies, m[1]) {
				at("policy %q is not one of %v", m[1], r.policies)
			}
		case c != nil:
			for _, capability := range strings.Split(c[1], ",") {
				capability = strings.Trim(strings.TrimSpace(capability), `"`)
				if !slices.Contains(r.capabilities, capability) {
					at("capability %q is not valid in %s", capability, block)
				}
			}
		default:
			at("unexpected %q", line)
		}
	}
	if block != "" {
		problems = append(problems, "block "+block+" is not closed")
	}
	return problems
}

func TestACLProblemsCatchTypos(t *testing.T) {
	bad := "namespace \"*\" {\n  capabilities = [\"read-job\", \"read_logs\"]\n}\nnode {\n  policy = \"reader\"\n}\nnamspace \"default\" {\n}\n"
	got := aclProblems(bad, nomadRules)
	want := []string{
		`line 2: capability "read_logs" is not valid in namespace`,
		`line 5: policy "reader" is not one of [deny read write]`,
		`line 7: unknown rule "namspace"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
