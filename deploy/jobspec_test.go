package deploy

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/hashicorp/nomad/api"
	"github.com/hashicorp/nomad/jobspec2"

	"github.com/vigie/vigie/config"
)

// The job is parsed by Nomad's own HCL2 jobspec parser (jobspec2, what
// "nomad job run" and "nomad job validate" use on the client side), then
// checked the way the server's Job.Validate checks it (ported below: this
// module cannot import nomad/structs), then for what Vigie needs. Its
// templates are rendered with a stand-in for consul-template (same
// text/template syntax, the functions the job uses) and the result loaded
// by Vigie's own configuration loader.

const (
	jobFile      = "vigie.nomad.hcl"
	sampleConfig = "testdata/vigie-config.toml" // the KV value vigie/config.toml
	sampleImage  = "registry.example.org/vigie:1.4.0"
	vigieUID     = 65532 // the image's user and group (Dockerfile)
	configKey    = "vigie/config.toml"
	secretPrefix = "vigie/secrets/"

	// maxKillTimeout is the Nomad client's default max_kill_timeout: a
	// longer kill_timeout is cut to it.
	maxKillTimeout = 30 * time.Second
)

func parseJob(t *testing.T, vars ...string) (*api.Job, error) {
	t.Helper()
	body, err := os.ReadFile(jobFile)
	if err != nil {
		t.Fatal(err)
	}
	return jobspec2.ParseWithConfig(&jobspec2.ParseConfig{
		Path: jobFile, BaseDir: ".", Body: body, ArgVars: vars, Strict: true,
	})
}

// loadJob is the job as parsed, before Nomad fills in its defaults.
func loadJob(t *testing.T) *api.Job {
	t.Helper()
	job, err := parseJob(t, "image="+sampleImage)
	if err != nil {
		t.Fatalf("%s does not parse as nomad job run would parse it:\n%v", jobFile, err)
	}
	return job
}

// theTask is the job's one group and its one task.
func theTask(t *testing.T, job *api.Job) (*api.TaskGroup, *api.Task) {
	t.Helper()
	if len(job.TaskGroups) != 1 || len(job.TaskGroups[0].Tasks) != 1 {
		t.Fatalf("want one group with one task, got %d groups", len(job.TaskGroups))
	}
	return job.TaskGroups[0], job.TaskGroups[0].Tasks[0]
}

func TestJobspecWantsImage(t *testing.T) {
	if _, err := parseJob(t); err == nil || !strings.Contains(err.Error(), "image") {
		t.Fatalf("without -var image=… the job must not parse (the image is pinned per deployment), got %v", err)
	}
}

// TestJobspecFormatted is "nomad fmt -check": the canonical HCL layout.
func TestJobspecFormatted(t *testing.T) {
	b, err := os.ReadFile(jobFile)
	if err != nil {
		t.Fatal(err)
	}
	if f := hclwrite.Format(b); string(f) != string(b) {
		t.Errorf("%s is not formatted as nomad fmt formats it; run nomad fmt %s", jobFile, jobFile)
	}
}

// TestJobspecNomadValidate applies the server's validation, as far as it
// does not need a cluster (node counts, drivers' schemas, ACLs).
func TestJobspecNomadValidate(t *testing.T) {
	job := loadJob(t)
	job.Canonicalize() // what the CLI does before it submits
	for _, p := range nomadValidate(job) {
		t.Error(p)
	}
}

func TestJobspecVigie(t *testing.T) {
	job := loadJob(t)
	tg, task := theTask(t, job)

	if v(job.Type) != "service" {
		t.Errorf("job type %q, want service", v(job.Type))
	}
	if v(tg.Count) != 2 {
		t.Errorf("count %d, want 2 (a leader and a standby)", v(tg.Count))
	}
	if !distinctHosts(job.Constraints) && !distinctHosts(tg.Constraints) {
		t.Error("no distinct_hosts constraint: both instances could land on one node")
	}

	// Updates and drains one instance at a time, health-checked, reverted.
	if u := tg.Update; u == nil {
		t.Error("no update block")
	} else if v(u.MaxParallel) != 1 || v(u.HealthCheck) != "checks" || !v(u.AutoRevert) {
		t.Errorf("update: max_parallel %d, health_check %q, auto_revert %v; want 1, checks, true", v(u.MaxParallel), v(u.HealthCheck), v(u.AutoRevert))
	}
	if m := tg.Migrate; m == nil || v(m.MaxParallel) != 1 {
		t.Error("migrate: want max_parallel = 1 (a drain must not stop both instances)")
	}
	if tg.RestartPolicy == nil || tg.ReschedulePolicy == nil {
		t.Error("want explicit restart and reschedule blocks")
	}
	if d := tg.EphemeralDisk; d == nil || !v(d.Sticky) || !v(d.Migrate) {
		t.Error("ephemeral_disk: want sticky and migrate (the Matrix device and crypto store stay with the instance)")
	}

	// The task: Docker, the image given, non-root, no Vault.
	if task.Driver != "docker" {
		t.Errorf("driver %q, want docker", task.Driver)
	}
	if task.Vault != nil {
		t.Error("a vault block: the job must run without Vault")
	}
	if u := task.User; u == "" || u == "root" || u == "0" || strings.HasPrefix(u, "0:") {
		t.Errorf("user %q: want the image's unprivileged user", u)
	}
	if img, _ := task.Config["image"].(string); img != sampleImage {
		t.Errorf("image %q, want the variable's value %q", img, sampleImage)
	}
	for k := range task.Config {
		if !slices.Contains(dockerConfigKeys, k) {
			t.Errorf("docker config key %q: not one the Docker driver knows", k)
		}
	}
	if m, _ := task.Config["network_mode"].(string); m != "host" {
		t.Errorf("network_mode %q: want host (Vigie reaches the local agents on 127.0.0.1, listens on the port Nomad gives)", m)
	}
	if n := groupNetwork(tg); n == nil || (n.Mode != "" && n.Mode != "host") {
		t.Error("want a group network in host mode with the http port")
	}
	configPath := argAfter(task.Config["args"], "--config")
	if configPath == "" {
		t.Error("args: want --config FILE")
	}

	if r := task.Resources; r == nil || r.CPU == nil || r.MemoryMB == nil {
		t.Error("resources: want cpu and memory")
	} else if lim, err := parseBytes(task.Env["GOMEMLIMIT"]); err != nil || lim >= int64(*r.MemoryMB)<<20 {
		t.Errorf("GOMEMLIMIT %q: want it set, below memory (%d MB), room left for pg_dump", task.Env["GOMEMLIMIT"], *r.MemoryMB)
	}
	if k := v(task.KillTimeout); k <= 0 || k > maxKillTimeout {
		t.Errorf("kill_timeout %s: want set, at most the clients' default max_kill_timeout %s", k, maxKillTimeout)
	}

	// The service and its two checks.
	if len(tg.Services)+len(task.Services) != 1 {
		t.Fatalf("want one service, got %d", len(tg.Services)+len(task.Services))
	}
	svc := append(tg.Services, task.Services...)[0]
	if svc.PortLabel != "http" || !hasPort(tg, "http") {
		t.Errorf("service port %q: want the group's http port", svc.PortLabel)
	}
	checks := map[string]api.ServiceCheck{}
	for _, c := range svc.Checks {
		checks[c.Path] = c
		if c.Type != "http" || c.Interval <= 0 || c.Timeout <= 0 || c.Timeout >= c.Interval {
			t.Errorf("check %q: type %q, interval %s, timeout %s; want http with a timeout shorter than its interval", c.Name, c.Type, c.Interval, c.Timeout)
		}
	}
	if c, ok := checks["/healthz"]; !ok {
		t.Error("no /healthz check")
	} else if c.OnUpdate == api.OnUpdateIgnore || c.CheckRestart == nil {
		t.Error("/healthz: want it to gate deployments and restart a hung process (check_restart)")
	}
	if c, ok := checks["/readyz"]; !ok {
		t.Error("no /readyz check")
	} else if c.OnUpdate != api.OnUpdateIgnore || c.CheckRestart != nil {
		t.Error("/readyz: want on_update = ignore and no check_restart (a standby refusing the leader's older configuration must not fail a rolling update)")
	}

	// Templates: the configuration, named by --config, and the secrets.
	dests := map[string]bool{}
	var sawConfig bool
	for _, tp := range task.Templates {
		dest := v(tp.DestPath)
		if dests[dest] {
			t.Errorf("two templates render %s", dest)
		}
		dests[dest] = true
		if v(tp.ChangeMode) != "restart" {
			t.Errorf("template %s: change_mode %q, want restart", dest, v(tp.ChangeMode))
		}
		switch {
		case "/"+dest == configPath:
			sawConfig = true
			if !strings.Contains(v(tp.EmbeddedTmpl), `{{ key "`+configKey+`" }}`) {
				t.Errorf("template %s: want the KV key %s in it", dest, configKey)
			}
		case strings.HasPrefix(dest, "secrets/"):
			name := path.Base(dest)
			if !secretTemplate(name).MatchString(v(tp.EmbeddedTmpl)) {
				t.Errorf("template %s: want nothing but {{ key %q }} (or keyOrDefault), got %q", dest, secretPrefix+name, v(tp.EmbeddedTmpl))
			}
			if v(tp.Perms) != "0400" || v(tp.Uid) != vigieUID || v(tp.Gid) != vigieUID {
				t.Errorf("template %s: perms %q uid %d gid %d; want 0400 owned by %d (the task's user)", dest, v(tp.Perms), v(tp.Uid), v(tp.Gid), vigieUID)
			}
		default:
			t.Errorf("template %s: neither the configuration (--config %s) nor a secret under secrets/", dest, configPath)
		}
	}
	if !sawConfig {
		t.Errorf("no template renders --config %s", configPath)
	}
}

// secretTemplate is all a secret's template may hold: its KV key.
func secretTemplate(name string) *regexp.Regexp {
	k := regexp.QuoteMeta(strconv.Quote(secretPrefix + name))
	return regexp.MustCompile(`^\{\{ (key ` + k + `|keyOrDefault ` + k + ` "") \}\}$`)
}

// secretLiterals are shapes of credentials: none may be written in the
// job or in the KV configuration it renders.
var secretLiterals = []*regexp.Regexp{
	regexp.MustCompile(`(?i)(password|passwd|secret|token|pickle|api_?key)\s*=\s*"[^"{$]`),
	regexp.MustCompile(`\b(syt|mct|syl)_[A-Za-z0-9_]{10,}`),                                // Matrix tokens
	regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`),                               // PEM keys
	regexp.MustCompile(`\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`), // Nomad, Consul secret IDs
	regexp.MustCompile(`\bGK[0-9a-f]{24}\b|\bAKIA[0-9A-Z]{16}\b`),                          // Garage, AWS key IDs
	regexp.MustCompile(`\b[0-9a-fA-F]{32,}\b`),                                             // hex keys
	regexp.MustCompile(`[A-Za-z0-9+/]{40,}={0,2}`),                                         // base64 keys
}

func TestJobspecNoSecretLiteral(t *testing.T) {
	for _, file := range []string{jobFile, sampleConfig} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, re := range secretLiterals {
				if m := re.FindString(line); m != "" {
					t.Errorf("%s:%d: %q looks like a secret written in the file; secrets come from Consul KV %s…", file, i+1, m, secretPrefix)
				}
			}
		}
	}
}

// instance is what differs between the two allocations.
type instance struct{ node, alloc, ip, port string }

// renderTask renders the task's templates for one allocation as Nomad's
// template runner would, into dir (laid out as the task sees /alloc,
// /local and /secrets), with kv as Consul's KV store. It returns the path
// of the configuration, its rendered text before the paths were moved
// under dir, and the secrets rendered.
func renderTask(t *testing.T, task *api.Task, dir string, kv map[string]string, in instance) (cfgPath, text string, secrets []string) {
	t.Helper()
	env := map[string]string{
		"node.unique.name": in.node, "NOMAD_SHORT_ALLOC_ID": in.alloc,
		"NOMAD_IP_http": in.ip, "NOMAD_PORT_http": in.port,
		"NOMAD_ALLOC_DIR": "/alloc", "NOMAD_TASK_DIR": "/local", "NOMAD_SECRETS_DIR": "/secrets",
	}
	funcs := template.FuncMap{
		"key": func(k string) (string, error) {
			if val, ok := kv[k]; ok {
				return val, nil
			}
			return "", fmt.Errorf("KV key %s absent: Nomad would wait for it", k)
		},
		"keyOrDefault": func(k, def string) string {
			if val, ok := kv[k]; ok {
				return val
			}
			return def
		},
		"env": func(k string) (string, error) {
			if val, ok := env[k]; ok {
				return val, nil
			}
			return "", fmt.Errorf("env %q: not set for the task (the test's renderer knows %v)", k, slices.Sorted(maps.Keys(env)))
		},
	}
	configPath := argAfter(task.Config["args"], "--config")
	for _, tp := range task.Templates {
		dest := v(tp.DestPath)
		tmpl, err := template.New(dest).Funcs(funcs).Parse(v(tp.EmbeddedTmpl))
		if err != nil {
			t.Fatalf("template %s: %v (a consul-template function the test's renderer lacks? add it)", dest, err)
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, nil); err != nil {
			t.Fatalf("template %s: %v", dest, err)
		}
		out := b.String()
		if "/"+dest == configPath {
			text = out
			cfgPath = filepath.Join(dir, dest)
			for _, d := range []string{"/alloc/", "/local/", "/secrets/"} {
				out = strings.ReplaceAll(out, `"`+d, `"`+filepath.Join(dir, d)+"/")
			}
		} else {
			secrets = append(secrets, path.Base(dest))
		}
		file := filepath.Join(dir, dest)
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if cfgPath == "" {
		t.Fatalf("no template renders --config %s", configPath)
	}
	return cfgPath, text, secrets
}

// sampleKV is Consul's KV as the README has the operator fill it.
func sampleKV(t *testing.T, task *api.Task) map[string]string {
	t.Helper()
	b, err := os.ReadFile(sampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	kv := map[string]string{configKey: string(b)}
	for _, tp := range task.Templates {
		if dest := v(tp.DestPath); strings.HasPrefix(dest, "secrets/") {
			kv[secretPrefix+path.Base(dest)] = "sample value of " + path.Base(dest) + "\n"
		}
	}
	return kv
}

// clearEnv keeps the developer's or CI's Vigie, Nomad, Consul, S3 and
// Garage settings out of config.Load.
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		for _, p := range []string{"VIGIE_", "NOMAD_", "CONSUL_", "AWS_", "GARAGE_"} {
			if strings.HasPrefix(k, p) {
				t.Setenv(k, "")
			}
		}
	}
}

var secretPath = regexp.MustCompile(`"/secrets/([^"/]+)"`)

func TestJobspecRendersConfigVigieLoads(t *testing.T) {
	clearEnv(t)
	_, task := theTask(t, loadJob(t))
	kv := sampleKV(t, task)

	one := instance{node: "node-1", alloc: "8c4f2e1a", ip: "192.0.2.10", port: "24312"}
	dir := t.TempDir()
	path1, text, secrets := renderTask(t, task, dir, kv, one)

	// Every secret the job renders is one the configuration names, and the
	// configuration names no secret the job does not render.
	named := map[string]bool{}
	for _, m := range secretPath.FindAllStringSubmatch(text, -1) {
		named[m[1]] = true
	}
	for _, s := range secrets {
		if !named[s] {
			t.Errorf("the job renders /secrets/%s but %s names it nowhere", s, sampleConfig)
		}
		delete(named, s)
	}
	for s := range named {
		t.Errorf("%s names /secrets/%s, which the job does not render", sampleConfig, s)
	}

	cfg, err := config.Load(path1)
	if err != nil {
		t.Fatalf("Vigie refuses the configuration the job renders:\n%v\n--- rendered:\n%s", err, text)
	}
	for _, p := range cfg.MatrixProblems() {
		t.Errorf("vigie run would refuse it: %v", p)
	}
	if !cfg.HA.Enabled || cfg.HA.Instance != "node-1-8c4f2e1a" || cfg.HA.LockKey != "vigie/leader" {
		t.Errorf("[ha]: enabled %v, instance %q, lock_key %q; want true, node-1-8c4f2e1a, vigie/leader", cfg.HA.Enabled, cfg.HA.Instance, cfg.HA.LockKey)
	}
	if want := filepath.Join(dir, "alloc/data/vigie"); cfg.DataDir != want {
		t.Errorf("data_dir %s, want %s: only alloc/data follows the allocation (ephemeral_disk migrate)", cfg.DataDir, want)
	}
	if want := net.JoinHostPort(one.ip, one.port); cfg.HTTP.Listen != want {
		t.Errorf("http.listen %q, want %q: the port the service and its checks use", cfg.HTTP.Listen, want)
	}
	if cfg.Backups.Timeout.Duration <= 0 || len(cfg.Backups.Targets) == 0 {
		t.Error("the sample configuration should show a backup target")
	}

	// The other instance renders a configuration its leader accepts: the
	// two fingerprints differ only where instances may.
	two := instance{node: "node-2", alloc: "3b9d07c5", ip: "192.0.2.11", port: "27104"}
	path2, _, _ := renderTask(t, task, t.TempDir(), kv, two)
	cfg2, err := config.Load(path2)
	if err != nil {
		t.Fatalf("second instance: %v", err)
	}
	if d := config.FingerprintDiff(cfg.Fingerprint(), cfg2.Fingerprint()); len(d) > 0 {
		t.Errorf("the two instances' configurations differ in %v: the standby would refuse to take over", d)
	}
	if cfg.HA.Instance == cfg2.HA.Instance {
		t.Errorf("both instances are named %q", cfg.HA.Instance)
	}
}

// TestJobspecMatchesDockerfile: the job runs the image as the user the
// Dockerfile creates, and its secrets are that user's.
func TestJobspecMatchesDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages := strings.Split(string(b), "\nFROM ")
	final := stages[len(stages)-1]
	uid := strconv.Itoa(vigieUID)
	for _, want := range []string{
		"\nUSER " + uid + ":" + uid + "\n",
		`ENTRYPOINT ["/vigie"]`,
	} {
		if !strings.Contains(final, want) {
			t.Errorf("Dockerfile's final stage lacks %q", strings.TrimSpace(want))
		}
	}
	if !regexp.MustCompile(`adduser [^\n]*-u ` + uid + `\b[^\n]* vigie\b`).MatchString(final) {
		t.Errorf("Dockerfile: no user vigie with uid %s (the job's task runs as user = \"vigie\")", uid)
	}
	_, task := theTask(t, loadJob(t))
	if task.User != "vigie" {
		t.Errorf("task user %q, want vigie", task.User)
	}
}

// nomadValidate is what Nomad's Job.Validate (nomad/structs, v1.11)
// checks in this job's blocks, on the canonicalized job.
func nomadValidate(job *api.Job) []string {
	var ps []string
	add := func(format string, args ...any) { ps = append(ps, fmt.Sprintf(format, args...)) }

	if v(job.ID) == "" || v(job.Name) == "" {
		add("job: missing ID or name")
	}
	if !slices.Contains([]string{"service", "batch", "system", "sysbatch"}, v(job.Type)) {
		add("job: invalid type %q", v(job.Type))
	}
	if p := v(job.Priority); p < 1 || p > 100 {
		add("job: priority %d out of 1..100", p)
	}
	if len(job.Datacenters) == 0 {
		add("job: no datacenters")
	}
	validateConstraints("job", job.Constraints, add)
	if len(job.TaskGroups) == 0 {
		add("job: no task groups")
	}
	groups := map[string]bool{}
	for _, tg := range job.TaskGroups {
		name := "group " + v(tg.Name)
		if groups[v(tg.Name)] {
			add("%s: defined twice", name)
		}
		groups[v(tg.Name)] = true
		if v(tg.Count) < 0 {
			add("%s: negative count", name)
		}
		validateConstraints(name, tg.Constraints, add)
		for _, s := range tg.Spreads {
			if s.Attribute == "" {
				add("%s: spread without attribute", name)
			}
			if w := v(s.Weight); w < 0 || w > 100 {
				add("%s: spread weight %d out of 0..100", name, w)
			}
		}

		if r := tg.RestartPolicy; r != nil {
			if m := v(r.Mode); m != "delay" && m != "fail" {
				add("%s: restart mode %q", name, m)
			}
			if v(r.Attempts) == 0 && v(r.Mode) != "fail" {
				add("%s: restart policy %q with 0 attempts is ambiguous", name, v(r.Mode))
			}
			if v(r.Interval) < 5*time.Second {
				add("%s: restart interval below 5s", name)
			}
			if time.Duration(v(r.Attempts))*v(r.Delay) > v(r.Interval) {
				add("%s: %d restarts with a delay of %s do not fit in %s", name, v(r.Attempts), v(r.Delay), v(r.Interval))
			}
		}
		if r := tg.ReschedulePolicy; r != nil && (v(r.Attempts) > 0 || v(r.Unlimited)) {
			if v(r.Attempts) > 0 && v(r.Unlimited) {
				add("%s: reschedule attempts with unlimited is ambiguous", name)
			}
			if v(r.Delay) < 5*time.Second {
				add("%s: reschedule delay below 5s", name)
			}
			if !slices.Contains([]string{"constant", "exponential", "fibonacci"}, v(r.DelayFunction)) {
				add("%s: reschedule delay_function %q", name, v(r.DelayFunction))
			}
			if v(r.DelayFunction) != "constant" && (v(r.MaxDelay) < 5*time.Second || v(r.MaxDelay) < v(r.Delay)) {
				add("%s: reschedule max_delay %s below 5s or delay", name, v(r.MaxDelay))
			}
			if !v(r.Unlimited) && v(r.Interval) < 15*time.Second {
				add("%s: reschedule interval below 15s", name)
			}
		}
		disk := 0
		if d := tg.EphemeralDisk; d != nil {
			if disk = v(d.SizeMB); disk < 10 {
				add("%s: ephemeral_disk size %d MB below 10", name, disk)
			}
		}
		if u := tg.Update; u != nil {
			validateDeploymentTimes(name+": update", v(u.HealthCheck), v(u.MinHealthyTime), v(u.HealthyDeadline), v(u.ProgressDeadline), add)
			if v(u.MaxParallel) < 0 || v(u.Canary) < 0 {
				add("%s: update max_parallel or canary negative", name)
			}
			if v(u.Canary) == 0 && v(u.AutoPromote) {
				add("%s: auto_promote needs canaries", name)
			}
			if v(u.Stagger) <= 0 {
				add("%s: update stagger must be positive", name)
			}
		}
		if m := tg.Migrate; m != nil {
			validateDeploymentTimes(name+": migrate", v(m.HealthCheck), v(m.MinHealthyTime), v(m.HealthyDeadline), 0, add)
		}

		ports := map[string]bool{}
		for _, n := range tg.Networks {
			for _, p := range append(slices.Clone(n.ReservedPorts), n.DynamicPorts...) {
				if ports[p.Label] {
					add("%s: port %q defined twice", name, p.Label)
				}
				ports[p.Label] = true
			}
		}
		tasks := map[string]bool{}
		for _, task := range tg.Tasks {
			tname := name + " task " + task.Name
			if task.Name == "" || tasks[task.Name] {
				add("%s: missing or duplicate task name", tname)
			}
			tasks[task.Name] = true
			if task.Driver == "" {
				add("%s: missing driver", tname)
			}
			validateConstraints(tname, task.Constraints, add)
			if r := task.Resources; r != nil {
				if v(r.CPU) > 0 && v(r.Cores) > 0 {
					add("%s: cpu and cores both set", tname)
				}
				if v(r.Cores) == 0 && v(r.CPU) < 1 {
					add("%s: cpu below 1 MHz", tname)
				}
				if v(r.MemoryMB) < 10 {
					add("%s: memory below 10 MB", tname)
				}
				if mx := v(r.MemoryMaxMB); mx != 0 && mx < v(r.MemoryMB) {
					add("%s: memory_max %d below memory %d", tname, mx, v(r.MemoryMB))
				}
				if v(r.DiskMB) > 0 {
					add("%s: disk belongs to the group's ephemeral_disk", tname)
				}
			}
			if v(task.KillTimeout) < 0 {
				add("%s: negative kill_timeout", tname)
			}
			if l := task.LogConfig; l != nil && disk > 0 && v(l.MaxFiles)*v(l.MaxFileSizeMB) >= disk {
				add("%s: logs (%d × %d MB) do not fit in the ephemeral disk (%d MB)", tname, v(l.MaxFiles), v(l.MaxFileSizeMB), disk)
			}
			dests := map[string]bool{}
			for _, tp := range task.Templates {
				validateTemplate(tname, tp, dests, add)
			}
			for _, s := range task.Services {
				validateService(tname, s, ports, add)
			}
		}
		for _, s := range tg.Services {
			validateService(name, s, ports, add)
		}
	}
	return ps
}

func validateDeploymentTimes(name, healthCheck string, minHealthy, healthyDeadline, progressDeadline time.Duration, add func(string, ...any)) {
	if !slices.Contains([]string{"checks", "task_states", "manual"}, healthCheck) {
		add("%s: health_check %q", name, healthCheck)
	}
	if minHealthy < 0 || healthyDeadline <= 0 || progressDeadline < 0 {
		add("%s: negative or zero deadlines", name)
	}
	if minHealthy >= healthyDeadline {
		add("%s: min_healthy_time %s not below healthy_deadline %s", name, minHealthy, healthyDeadline)
	}
	if progressDeadline != 0 && healthyDeadline >= progressDeadline {
		add("%s: healthy_deadline %s not below progress_deadline %s", name, healthyDeadline, progressDeadline)
	}
}

func validateConstraints(name string, cs []*api.Constraint, add func(string, ...any)) {
	for _, c := range cs {
		switch c.Operand {
		case "distinct_hosts":
			if c.RTarget != "" {
				if _, err := strconv.ParseBool(c.RTarget); err != nil {
					add("%s: distinct_hosts value %q is not a boolean", name, c.RTarget)
				}
			}
		case "distinct_property", "=", "==", "is", "!=", "not", "<", "<=", ">", ">=", "regexp",
			"set_contains", "set_contains_all", "set_contains_any", "version", "semver", "is_set", "is_not_set":
			if c.LTarget == "" {
				add("%s: constraint %q without attribute", name, c.Operand)
			}
		default:
			add("%s: unknown constraint operator %q", name, c.Operand)
		}
	}
}

func validateTemplate(name string, tp *api.Template, dests map[string]bool, add func(string, ...any)) {
	dest := v(tp.DestPath)
	if v(tp.SourcePath) == "" && v(tp.EmbeddedTmpl) == "" {
		add("%s: template %s renders nothing", name, dest)
	}
	if dest == "" {
		add("%s: template without destination", name)
	} else if clean := path.Clean(path.Join("task", dest)); !strings.HasPrefix(clean, "task/") && !strings.HasPrefix(clean, "alloc/") {
		add("%s: template destination %s escapes the allocation directory", name, dest)
	}
	if dests[dest] {
		add("%s: two templates render %s", name, dest)
	}
	dests[dest] = true
	switch v(tp.ChangeMode) {
	case "noop", "restart", "script":
	case "signal":
		if v(tp.ChangeSignal) == "" {
			add("%s: template %s: change_mode signal without change_signal", name, dest)
		}
	default:
		add("%s: template %s: change_mode %q", name, dest, v(tp.ChangeMode))
	}
	if v(tp.Splay) < 0 {
		add("%s: template %s: negative splay", name, dest)
	}
	if p := v(tp.Perms); p != "" {
		if _, err := strconv.ParseUint(p, 8, 12); err != nil {
			add("%s: template %s: perms %q not octal", name, dest, p)
		}
	}
}

func validateService(name string, s *api.Service, ports map[string]bool, add func(string, ...any)) {
	name += " service " + s.Name
	if !regexp.MustCompile(`^[a-z0-9-]{1,63}$`).MatchString(s.Name) {
		add("%s: name must be a DNS label", name)
	}
	if s.PortLabel != "" && !ports[s.PortLabel] {
		if _, err := strconv.Atoi(s.PortLabel); err != nil {
			add("%s: port %q is not a port of the group's network", name, s.PortLabel)
		}
	}
	checks := map[string]bool{}
	for _, c := range s.Checks {
		cname := name + " check " + c.Name
		if checks[c.Name] {
			add("%s: two checks of one name", cname)
		}
		checks[c.Name] = true
		if !slices.Contains([]string{"grpc", "tcp", "http", "script"}, strings.ToLower(c.Type)) {
			add("%s: type %q", cname, c.Type)
		}
		if strings.EqualFold(c.Type, "http") {
			if u, err := url.Parse(c.Path); c.Path == "" || err != nil || u.IsAbs() {
				add("%s: http checks want a relative path, got %q", cname, c.Path)
			}
		}
		if c.Interval < time.Second || c.Timeout < time.Second {
			add("%s: interval %s and timeout %s must be at least 1s", cname, c.Interval, c.Timeout)
		}
		if !slices.Contains([]string{"", api.OnUpdateRequireHealthy, api.OnUpdateIgnoreWarn, api.OnUpdateIgnore}, c.OnUpdate) {
			add("%s: on_update %q", cname, c.OnUpdate)
		}
		if c.CheckRestart != nil {
			if c.OnUpdate == api.OnUpdateIgnore {
				add("%s: on_update ignore is not compatible with check_restart", cname)
			}
			if c.OnUpdate == api.OnUpdateIgnoreWarn && !c.CheckRestart.IgnoreWarnings {
				add("%s: on_update ignore_warnings needs check_restart ignore_warnings", cname)
			}
			if c.CheckRestart.Limit < 0 || v(c.CheckRestart.Grace) < 0 {
				add("%s: check_restart limit and grace must not be negative", cname)
			}
		}
	}
}

// dockerConfigKeys are the Docker task driver's options (Nomad v1.11.3,
// drivers/docker/config.go): a misspelt one is otherwise only found by the
// client, at placement.
var dockerConfigKeys = strings.Fields(`image advertise_ipv6_address args auth auth_soft_fail
	cap_add cap_drop cgroupns command cpuset_cpus cpu_hard_limit cpu_cfs_period
	container_exists_attempts devices dns_search_domains dns_options dns_servers entrypoint
	extra_hosts force_pull group_add healthchecks hostname init interactive ipc_mode
	ipv4_address ipv6_address isolation labels load logging mac_address memory_hard_limit
	mount mounts network_aliases network_mode oom_score_adj runtime pids_limit pid_mode ports
	port_map privileged image_pull_timeout readonly_rootfs security_opt shm_size storage_opt
	sysctl tty ulimit uts_mode userns_mode volumes volume_driver work_dir`)

func distinctHosts(cs []*api.Constraint) bool {
	for _, c := range cs {
		if c.Operand == "distinct_hosts" {
			b, err := strconv.ParseBool(c.RTarget)
			return c.RTarget == "" || (err == nil && b)
		}
	}
	return false
}

func groupNetwork(tg *api.TaskGroup) *api.NetworkResource {
	if len(tg.Networks) != 1 {
		return nil
	}
	return tg.Networks[0]
}

func hasPort(tg *api.TaskGroup, label string) bool {
	for _, n := range tg.Networks {
		for _, p := range append(slices.Clone(n.ReservedPorts), n.DynamicPorts...) {
			if p.Label == label {
				return true
			}
		}
	}
	return false
}

// argAfter is the argument following flag in a Docker args list.
func argAfter(args any, flag string) string {
	list, _ := args.([]any)
	for i, a := range list {
		if a == flag && i+1 < len(list) {
			s, _ := list[i+1].(string)
			return s
		}
	}
	return ""
}

// parseBytes reads a GOMEMLIMIT value ("180MiB").
func parseBytes(s string) (int64, error) {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			x, err := strconv.ParseInt(n, 10, 64)
			return x << u.shift, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// v is *p, or the zero value for nil.
func v[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
