package doctor

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/vigie/vigie/config"
)

// nomadUse is something Vigie does with Nomad and the capabilities it
// needs (deploy/acl/nomad-*.hcl).
type nomadUse struct {
	name     string   // the check's name
	commands []string // the chat commands; nil: the alerts watcher
	needs    []capNeed
	node     bool // node:read
}

// capNeed is one capability, or the finer ones that replace it on newer
// Nomads: any alternative with all of its capabilities will do.
type capNeed struct {
	label string
	anyOf [][]string
}

func need(caps ...string) capNeed { return capNeed{label: caps[0], anyOf: [][]string{caps}} }

var (
	needReadJob     = need("read-job")
	needSubmitJob   = capNeed{label: "submit-job", anyOf: [][]string{{"submit-job"}, {"plan-job", "register-job"}}}
	needParseJob    = capNeed{label: "parse-job", anyOf: [][]string{{"parse-job"}, {"submit-job"}}}
	needRevertJob   = capNeed{label: "submit-job", anyOf: [][]string{{"submit-job"}, {"revert-job"}}}
	needPromoteDepl = capNeed{label: "submit-job", anyOf: [][]string{{"submit-job"}, {"promote-deployment"}}}
)

// nomadUses lists the uses the configuration makes of Nomad.
func nomadUses(cfg *config.Config) []nomadUse {
	deploy := []capNeed{needSubmitJob, needReadJob}
	if cfg.Nomad.JobspecsDir != "" {
		deploy = append(deploy, needParseJob)
	}
	return []nomadUse{
		{name: "acl: reads", commands: []string{"status", "jobs", "job", "logs"}},
		{name: "acl: deploy", commands: []string{"deploy"}, needs: deploy},
		{name: "acl: rollback", commands: []string{"rollback"}, needs: []capNeed{needRevertJob, needReadJob}},
		{name: "acl: promote", commands: []string{"promote"}, needs: []capNeed{needPromoteDepl, needReadJob}},
		{name: "acl: scale", commands: []string{"scale"}, needs: []capNeed{need("scale-job"), needReadJob}},
		{name: "acl: restart", commands: []string{"restart"}, needs: []capNeed{need("alloc-lifecycle"), needReadJob}},
	}
}

// readNeeds are the capabilities of the read commands a policy allows.
func readNeeds(allowed []string) (needs []capNeed, node bool) {
	add := func(n capNeed) {
		if !slices.ContainsFunc(needs, func(m capNeed) bool { return m.label == n.label }) {
			needs = append(needs, n)
		}
	}
	for _, c := range allowed {
		switch c {
		case "status":
			add(needReadJob)
			node = true
		case "jobs":
			add(need("list-jobs"))
		case "job":
			add(needReadJob)
		case "logs":
			add(need("read-logs"))
			add(needReadJob)
		}
	}
	return needs, node
}

// readCommands run for anyone with policy.read_open.
var readCommands = []string{"status", "jobs", "job"}

// allowedCommands are those of names some policy rule allows (or
// read_open opens).
func allowedCommands(cfg *config.Config, names []string) []string {
	var out []string
	for _, n := range names {
		allowed := cfg.Policy.ReadOpen && slices.Contains(readCommands, n)
		for _, r := range cfg.Policy.Rules {
			allowed = allowed || slices.Contains(r.Commands, n)
		}
		if allowed {
			out = append(out, n)
		}
	}
	return out
}

// nomadUsed tells whether the configuration uses Nomad at all.
func nomadUsed(cfg *config.Config) bool {
	if cfg.Nomad.Watch {
		return true
	}
	for _, t := range cfg.Backups.Targets {
		if t.Kind == config.BackupNomad {
			return true
		}
	}
	for _, u := range nomadUses(cfg) {
		if len(allowedCommands(cfg, u.commands)) > 0 {
			return true
		}
	}
	return false
}

// nomadToken is GET /v1/acl/token/self.
type nomadToken struct {
	AccessorID     string
	Name           string
	Type           string
	Policies       []string
	Roles          []struct{ ID, Name string }
	ExpirationTime *time.Time
}

// nomadTokenState is what the doctor learnt of the token.
type nomadTokenState struct {
	aclDisabled bool
	token       *nomadToken
	acl         *nomadACL // nil for a management token or without ACLs
	aclErr      error     // why the policies could not be read
}

type nomadProbe struct {
	cfg   *config.Config
	api   *httpAPI
	token string
}

func nomadChecks(p *Plan, cfg *config.Config, tc *tls.Config) {
	const comp = "nomad"
	if !nomadUsed(cfg) {
		p.Add(Check{Component: comp, Name: "cluster", Run: func(context.Context) Result {
			return Skip("not used: nomad.watch is off, no policy rule allows a Nomad command and no backup target is kind nomad")
		}})
		return
	}
	var q url.Values
	if cfg.Nomad.Region != "" {
		q = url.Values{"region": {cfg.Nomad.Region}}
	}
	n := &nomadProbe{cfg: cfg, api: newHTTPAPI("Nomad", "nomad", cfg.Nomad.Address, tc, "X-Nomad-Token", cfg.Nomad.Token.Reveal(), q), token: cfg.Nomad.Token.Reveal()}
	leader := NewLazy(n.api.leader)
	token := NewLazy(n.tokenState)
	p.Add(Check{Component: comp, Name: "reachable", Run: n.api.reachableCheck(leader)})
	p.Add(Check{Component: comp, Name: "tls", Run: n.api.tlsCheck(leader, tlsSettings{cfg.Nomad.TLS.CAFile, cfg.Nomad.TLS.CertFile})})
	p.Add(Check{Component: comp, Name: "token", Run: func(ctx context.Context) Result { return n.tokenCheck(ctx, token) }})

	ns := cfg.Nomad.Namespace
	if ns == "" {
		ns = "default"
	}
	if cfg.Nomad.Watch {
		p.Add(Check{Component: comp, Name: "acl: alerts", Run: func(ctx context.Context) Result {
			return n.watchACL(ctx, token)
		}})
	}
	for _, u := range nomadUses(cfg) {
		allowed := allowedCommands(cfg, u.commands)
		if u.commands != nil && len(allowed) == 0 {
			continue // no line: nobody may run them
		}
		if u.name == "acl: reads" {
			u.needs, u.node = readNeeds(allowed)
		}
		p.Add(Check{Component: comp, Name: u.name, Run: func(ctx context.Context) Result {
			return n.useACL(ctx, token, u, ns, allowed)
		}})
	}
	if cfg.Nomad.Watch {
		p.Add(Check{Component: comp, Name: "event stream", Timeout: streamWait + 5*time.Second, Run: n.streamCheck})
	}
	for _, t := range cfg.Backups.Targets {
		if t.Kind != config.BackupNomad {
			continue
		}
		tok := n.token
		if t.Token.IsSet() {
			tok = t.Token.Reveal()
		}
		p.Add(Check{Component: comp, Name: "snapshot for backup " + t.Name, Run: n.api.snapshotCheck("/v1/operator/snapshot", tok,
			"saving a snapshot needs a management token (nomad acl token create -type management) or operator write, in the target's token_file")})
	}
}

// tokenState asks Nomad about the token, then reads its policies.
func (n *nomadProbe) tokenState(ctx context.Context) (*nomadTokenState, error) {
	var tok nomadToken
	status, body, err := n.api.getJSON(ctx, "/v1/acl/token/self", nil, n.token, &tok)
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusBadRequest && strings.Contains(body, "ACL support disabled"):
		return &nomadTokenState{aclDisabled: true}, nil
	case status == http.StatusForbidden && n.token == "":
		return nil, fmt.Errorf("Nomad has ACLs on and no token is configured: set nomad.token_file (or NOMAD_TOKEN) to a token with the vigie-watch policy (deploy/acl/nomad-watch.hcl)")
	case status == http.StatusForbidden:
		return nil, fmt.Errorf("Nomad refused the token (%s): it is unknown, expired or revoked; check nomad.token_file or NOMAD_TOKEN", body)
	case status != http.StatusOK:
		return nil, fmt.Errorf("Nomad answered %d to GET /v1/acl/token/self: %s", status, body)
	}
	st := &nomadTokenState{token: &tok}
	if tok.Type == "management" {
		return st, nil
	}
	st.acl, st.aclErr = n.readPolicies(ctx, &tok)
	return st, nil
}

// readPolicies reads and merges the policies of a token, its roles' too.
func (n *nomadProbe) readPolicies(ctx context.Context, tok *nomadToken) (*nomadACL, error) {
	names := slices.Clone(tok.Policies)
	for _, r := range tok.Roles {
		var role struct{ Policies []struct{ Name string } }
		status, body, err := n.api.getJSON(ctx, "/v1/acl/role/"+url.PathEscape(r.ID), nil, n.token, &role)
		if err != nil {
			return nil, err
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("cannot read role %s (%d: %s)", r.Name, status, body)
		}
		for _, p := range role.Policies {
			if !slices.Contains(names, p.Name) {
				names = append(names, p.Name)
			}
		}
	}
	acl := newNomadACL()
	for _, name := range names {
		var pol struct{ Rules string }
		status, body, err := n.api.getJSON(ctx, "/v1/acl/policy/"+url.PathEscape(name), nil, n.token, &pol)
		if err != nil {
			return nil, err
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("cannot read policy %s (%d: %s)", name, status, body)
		}
		if err := acl.add(name, pol.Rules); err != nil {
			return nil, err
		}
	}
	return acl, nil
}

func (n *nomadProbe) tokenCheck(ctx context.Context, token *Lazy[*nomadTokenState]) Result {
	st, err := token.Get(ctx)
	switch {
	case err != nil:
		return Fail("%v", err)
	case st.aclDisabled:
		return Warn("ACLs are disabled on this cluster: anyone who reaches %s may do anything; enable them (nomad acl bootstrap)", n.cfg.Nomad.Address)
	}
	t := st.token
	detail := fmt.Sprintf("token %q (%s", t.Name, t.Type)
	if len(t.Policies) > 0 {
		detail += "; policies " + strings.Join(t.Policies, ", ")
	}
	if len(t.Roles) > 0 {
		var roles []string
		for _, r := range t.Roles {
			roles = append(roles, r.Name)
		}
		detail += "; roles " + strings.Join(roles, ", ")
	}
	detail += ")"
	if t.ExpirationTime != nil && !t.ExpirationTime.IsZero() {
		left := time.Until(*t.ExpirationTime)
		if left < 7*24*time.Hour {
			return Warn("%s expires at %s: create a new one before", detail, t.ExpirationTime.UTC().Format(time.RFC3339))
		}
		detail += ", expires " + t.ExpirationTime.UTC().Format("2006-01-02")
	}
	if st.aclErr != nil {
		return Warn("%s; but %v: its capabilities cannot be checked here (the commands will tell)", detail, st.aclErr)
	}
	if t.Type == "management" {
		return Warn("%s: a management token may do anything; Vigie needs much less (deploy/acl/nomad-*.hcl)", detail)
	}
	return OK("%s", detail)
}

// aclVerdict is the common start of the ACL lines: a result when the
// policies need not or cannot be evaluated.
func aclVerdict(st *nomadTokenState, err error) (Result, bool) {
	switch {
	case err != nil:
		return Skip("the token could not be checked (see the token line)"), true
	case st.aclDisabled:
		return Skip("ACLs are disabled: everything is allowed"), true
	case st.acl == nil && st.aclErr == nil:
		return OK("management token: everything is allowed"), true
	case st.aclErr != nil:
		return Skip("the token's policies cannot be read (see the token line)"), true
	}
	return Result{}, false
}

func (n *nomadProbe) useACL(ctx context.Context, token *Lazy[*nomadTokenState], u nomadUse, ns string, allowed []string) Result {
	st, err := token.Get(ctx)
	if r, done := aclVerdict(st, err); done {
		return r
	}
	var missing []string
	for _, c := range u.needs {
		if !st.acl.allows(ns, c.anyOf) {
			missing = append(missing, c.label)
		}
	}
	if u.node && !st.acl.nodeRead() {
		missing = append(missing, "node read")
	}
	what := strings.Join(allowed, ", ")
	if len(missing) > 0 {
		return Fail("the token lacks %s in namespace %q, which %s need(s): add the policy of deploy/acl/nomad-%s.hcl to it",
			strings.Join(missing, ", "), ns, what, policyFile(u))
	}
	return OK("%s allowed in namespace %q", what, ns)
}

// policyFile is the name of the shipped policy of a use.
func policyFile(u nomadUse) string {
	if u.commands == nil || u.name == "acl: reads" {
		return "watch"
	}
	return u.commands[0]
}

// watchNamespaces are the namespaces the alerts watch, as the watcher
// asks for them.
func watchNamespaces(cfg *config.Config) []string {
	switch {
	case len(cfg.Nomad.Namespaces) == 0:
		return []string{"default"}
	case slices.Contains(cfg.Nomad.Namespaces, "*"):
		return []string{"*"}
	}
	return cfg.Nomad.Namespaces
}

// watchTopics are the event stream topics, as the watcher asks for them.
func watchTopics(cfg *config.Config) []string {
	topics := cfg.Nomad.Topics
	if len(topics) == 0 {
		topics = []string{"Allocation", "Deployment", "Evaluation", "Job", "Node"}
	}
	var out []string
	for _, t := range topics {
		if !strings.Contains(t, ":") {
			t += ":*"
		}
		out = append(out, t)
	}
	return out
}

func (n *nomadProbe) watchACL(ctx context.Context, token *Lazy[*nomadTokenState]) Result {
	st, err := token.Get(ctx)
	if r, done := aclVerdict(st, err); done {
		return r
	}
	topics := watchTopics(n.cfg)
	jobTopics, nodeTopic := false, false
	for _, t := range topics {
		name, _, _ := strings.Cut(t, ":")
		switch name {
		case "Node":
			nodeTopic = true
		case "*":
			jobTopics, nodeTopic = true, true
		default:
			jobTopics = true
		}
	}
	var problems []string
	namespaces := watchNamespaces(n.cfg)
	if jobTopics {
		for _, ns := range namespaces {
			if !st.acl.allows(ns, needReadJob.anyOf) {
				problems = append(problems, fmt.Sprintf("read-job in namespace %q", ns))
			}
		}
		if slices.Contains(namespaces, "*") {
			// Nomad wants read-job in every namespace for "*", and a
			// block of a namespace's own name replaces the "*" one.
			for _, ns := range st.acl.exactNamespaces() {
				if !st.acl.allows(ns, needReadJob.anyOf) {
					problems = append(problems, fmt.Sprintf("read-job in namespace %q (its own block replaces the \"*\" one)", ns))
				}
			}
		}
	}
	if nodeTopic && !st.acl.nodeRead() {
		problems = append(problems, "node read (for the Node topic)")
	}
	if len(problems) > 0 {
		return Fail("the token lacks %s: alerts cannot follow the event stream; add deploy/acl/nomad-watch.hcl to it", strings.Join(problems, ", "))
	}
	logsOK := true
	for _, ns := range namespaces {
		logsOK = logsOK && st.acl.allows(ns, [][]string{{"read-logs"}})
	}
	if !logsOK {
		return Warn("alerts allowed, but without read-logs the stderr tail of failed tasks is left out of alerts")
	}
	return OK("read-job in %s%s", strings.Join(namespaces, ", "), map[bool]string{true: ", node read", false: ""}[nodeTopic])
}

// streamWait bounds the wait for a stream's headers: Nomad 1.x sends them
// with the first line, at worst the heartbeat every 30s.
const streamWait = 35 * time.Second

// streamCheck opens the event stream for each topic, as the watcher
// does, and hangs up once Nomad has answered: 200 or 403.
func (n *nomadProbe) streamCheck(ctx context.Context) Result {
	topics := watchTopics(n.cfg)
	q := url.Values{}
	switch ns := watchNamespaces(n.cfg); {
	case len(n.cfg.Nomad.Namespaces) == 0:
	case len(ns) == 1:
		q.Set("namespace", ns[0])
	default:
		q.Set("namespace", "*")
	}
	type answer struct {
		topic string
		res   Result
	}
	answers := make(chan answer, len(topics))
	for _, t := range topics {
		go func() {
			tq := url.Values{"topic": {t}}
			for k, v := range q {
				tq[k] = v
			}
			answers <- answer{t, n.openStream(ctx, tq)}
		}()
	}
	var denied, failed, silent []string
	var firstFail string
	for range topics {
		a := <-answers
		switch a.res.Status {
		case StatusFail:
			if strings.HasPrefix(a.res.Detail, "403") {
				denied = append(denied, a.topic)
			} else {
				failed = append(failed, a.topic)
				if firstFail == "" {
					firstFail = a.res.Detail
				}
			}
		case StatusWarn:
			silent = append(silent, a.topic)
		}
	}
	slices.Sort(denied)
	slices.Sort(failed)
	slices.Sort(silent)
	switch {
	case len(denied) > 0:
		return Fail("Nomad refused the topics %s (403): the token lacks read-job in the watched namespaces, or node read for Node; see deploy/acl/nomad-watch.hcl",
			strings.Join(denied, ", "))
	case len(failed) > 0:
		return Fail("topics %s: %s", strings.Join(failed, ", "), firstFail)
	case len(silent) > 0:
		return Warn("topics %s: no answer yet (Nomad sends the headers with the first event or heartbeat, up to 30s): cannot tell", strings.Join(silent, ", "))
	}
	return OK("the stream opens for %s", strings.Join(topics, ", "))
}

// openStream opens one stream; a Fail detail starting with "403" is a
// refusal.
func (n *nomadProbe) openStream(ctx context.Context, q url.Values) Result {
	ctx, cancel := context.WithTimeout(ctx, streamWait)
	defer cancel()
	resp, err := n.api.get(ctx, "/v1/event/stream", q, n.token)
	if err != nil {
		if ctx.Err() != nil {
			return Warn("no answer")
		}
		return Fail("%v", err)
	}
	defer resp.Body.Close()
	body := make([]byte, 512)
	switch {
	case resp.StatusCode == http.StatusForbidden:
		k, _ := io.ReadFull(resp.Body, body)
		return Fail("403: %s", snippet(body[:k]))
	case resp.StatusCode != http.StatusOK:
		k, _ := io.ReadFull(resp.Body, body)
		return Fail("Nomad answered %d: %s", resp.StatusCode, snippet(body[:k]))
	}
	// Nomad 2.x answers 200 to a refused token and closes the stream at
	// once: wait a moment for a first byte or the end.
	read := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(body[:1])
		read <- err
	}()
	select {
	case err := <-read:
		if err == io.EOF {
			return Fail("403-like: Nomad closed the stream before sending anything (Nomad 2.x does so for a token it refuses)")
		}
	case <-time.After(500 * time.Millisecond):
	case <-ctx.Done():
	}
	return OK("open")
}
