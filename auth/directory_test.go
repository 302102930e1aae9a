package auth

import (
	"encoding/base64"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/vigie/vigie/commands"
	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/internal/testenv"
)

const (
	serviceDN       = "cn=vigie,ou=services,dc=example,dc=org"
	servicePassword = "service-password"
	people          = "ou=people,dc=example,dc=org"

	deployers = "cn=deployers,ou=groups,dc=example,dc=org"
	approvers = "cn=approvers,ou=groups,dc=example,dc=org"
	admins    = "cn=admins,ou=groups,dc=example,dc=org"
	cacheTest = "cn=cachetest,ou=groups,dc=example,dc=org"
	posixOps  = "cn=posixops,ou=groups,dc=example,dc=org"
	uniqueOps = "cn=uniqueops,ou=groups,dc=example,dc=org"
)

// Users with hostile uids: a wildcard, a filter injection, a NUL byte, a
// literal filter escape (uid `\2a`, which an unescaped filter reads as
// `*`), and a non-ASCII name.
const (
	starDN    = "uid=*," + people
	parenUID  = ")(uid=*"
	parenDN   = "uid=)(uid=*," + people
	nulUID    = "a\x00b"
	nulDN     = "cn=nul," + people
	escapeUID = `\2a`
	escapeDN  = `uid=\5C2a,` + people
	elodie    = "élodie"
	elodieDN  = "uid=élodie," + people
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func person(dn, uid string, extra ...string) string {
	return "dn:: " + b64(dn) + "\nobjectClass: inetOrgPerson\nobjectClass: matrixUser\nuid:: " + b64(uid) +
		"\ncn:: " + b64(uid) + "\nsn: test\n" + strings.Join(extra, "\n") + "\n\n"
}

func groupOfNames(dn string, members ...string) string {
	var b strings.Builder
	b.WriteString("dn: " + dn + "\nobjectClass: groupOfNames\n")
	for _, m := range members {
		b.WriteString("member:: " + b64(m) + "\n")
	}
	return b.String() + "\n"
}

// directoryLDIF is the test directory. The memberOf overlay fills the
// users' memberOf from the groupOfNames groups.
func directoryLDIF() string {
	return `dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: ou=services,dc=example,dc=org
objectClass: organizationalUnit
ou: services

dn: ` + serviceDN + `
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: vigie
userPassword: ` + servicePassword + `

` +
		person("uid=alice,"+people, "alice", "matrixId: @alice:example.org") +
		person("uid=bob,"+people, "bob") +
		person("uid=carol,"+people, "carol") +
		person("uid=dave,"+people, "dave") +
		person("uid=erin,"+people, "erin") +
		person("uid=frank,"+people, "frank") +
		person(starDN, "*") +
		person(parenDN, parenUID) +
		person(nulDN, nulUID) +
		person(escapeDN, escapeUID) +
		person(elodieDN, elodie) +
		person("cn=twin1,"+people, "twin1", "matrixId: @twin:example.org") +
		person("cn=twin2,"+people, "twin2", "matrixId: @twin:example.org") +
		groupOfNames(deployers, "uid=alice,"+people, parenDN, elodieDN) +
		groupOfNames(approvers, "uid=erin,"+people) +
		groupOfNames(admins, "uid=frank,"+people) +
		// groupOfNames needs a member: the placeholder stays when alice
		// is removed.
		groupOfNames(cacheTest, "cn=placeholder", "uid=alice,"+people) +
		`dn: ` + posixOps + `
objectClass: posixGroup
cn: posixops
gidNumber: 5000
memberUid: carol

dn: ` + uniqueOps + `
objectClass: groupOfUniqueNames
cn: uniqueops
uniqueMember: uid=dave,` + people + `
`
}

func startDirectory(t *testing.T) *testenv.Slapd {
	t.Helper()
	return testenv.StartSlapd(t, directoryLDIF(), testenv.WithSlapdSchema(testenv.MatrixIDSchema))
}

// ldapConfig is a valid configuration for s: plain ldap://, localpart
// identity for example.org, memberOf groups.
func ldapConfig(s *testenv.Slapd) config.LDAP {
	return config.LDAP{
		URL:              s.URL,
		BindDN:           serviceDN,
		BindPassword:     config.NewSecret(servicePassword, "test"),
		Timeout:          config.Duration{Duration: 5 * time.Second},
		CacheTTL:         config.Duration{Duration: time.Minute},
		UserBaseDN:       people,
		UserFilter:       "(objectClass=inetOrgPerson)",
		Identity:         "localpart",
		LocalpartAttr:    "uid",
		LocalpartDomains: []string{"example.org"},
		GroupStrategy:    "memberOf",
		GroupBaseDN:      "ou=groups,dc=example,dc=org",
	}
}

func newDirectory(t *testing.T, cfg config.LDAP) *Directory {
	t.Helper()
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func sameDN(t *testing.T, got, want string) bool {
	t.Helper()
	g, err := ldap.ParseDN(got)
	if err != nil {
		t.Fatalf("server DN %q: %v", got, err)
	}
	w, err := ldap.ParseDN(want)
	if err != nil {
		t.Fatal(err)
	}
	return g.EqualFold(w)
}

// wantDenial checks err is an answer about the user, not an outage.
func wantDenial(t *testing.T, err error, substr string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("allowed, want a refusal containing %q", substr)
	case errors.Is(err, commands.ErrUnavailable):
		t.Errorf("error %q is an outage, want a refusal containing %q", err, substr)
	case !strings.Contains(err.Error(), substr):
		t.Errorf("error %q does not contain %q", err, substr)
	}
}

// wantUnavailable checks err is an outage and says nothing secret.
func wantUnavailable(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, commands.ErrUnavailable) {
		t.Fatalf("error %v, want commands.ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), servicePassword) {
		t.Errorf("error %q reveals the bind password", err)
	}
}

func TestNewDirectoryRejects(t *testing.T) {
	base := config.LDAP{
		URL: "ldap://127.0.0.1:1", BindDN: serviceDN, BindPassword: config.NewSecret("pw", "test"),
		Timeout: config.Duration{Duration: time.Second}, UserBaseDN: people,
		Identity: "localpart", LocalpartAttr: "uid", LocalpartDomains: []string{"example.org"}, GroupStrategy: "memberOf",
	}
	if _, err := NewDirectory(base); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for name, mutate := range map[string]func(*config.LDAP){
		"http URL":           func(c *config.LDAP) { c.URL = "http://ldap.example.org" },
		"ldaps and StartTLS": func(c *config.LDAP) { c.URL, c.StartTLS = "ldaps://127.0.0.1:1", true },
		"no password":        func(c *config.LDAP) { c.BindPassword = config.Secret{} },
		"no timeout":         func(c *config.LDAP) { c.Timeout.Duration = 0 },
		"broken filter":      func(c *config.LDAP) { c.UserFilter = "(objectClass=person" },
		"bad attribute":      func(c *config.LDAP) { c.LocalpartAttr = "uid)(x" },
		"missing CA file":    func(c *config.LDAP) { c.CAFile = "/nonexistent/ca.pem" },
		"no domains":         func(c *config.LDAP) { c.LocalpartDomains = nil },
		"unknown identity":   func(c *config.LDAP) { c.Identity = "email" },
		"member without base": func(c *config.LDAP) {
			c.GroupStrategy = "member"
		},
	} {
		cfg := base
		mutate(&cfg)
		if _, err := NewDirectory(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "pw") && name != "no password" {
			t.Errorf("%s: error %q may reveal the password", name, err)
		}
	}
}

func TestGroupStrategies(t *testing.T) {
	s := startDirectory(t)
	for _, tc := range []struct {
		strategy  string
		localpart string
		want      []string
	}{
		{"memberOf", "alice", []string{cacheTest, deployers}},
		{"memberOf", "bob", nil},
		{"memberOf", parenUID, []string{deployers}},
		{"memberOf", elodie, []string{deployers}},
		// The user's DN goes into the group filter: escaped, it matches.
		{"member", "alice", []string{cacheTest, deployers}},
		{"member", parenUID, []string{deployers}},
		{"member", elodie, []string{deployers}},
		{"member", "dave", nil},
		{"uniqueMember", "dave", []string{uniqueOps}},
		{"uniqueMember", "alice", nil},
		{"memberUid", "carol", []string{posixOps}},
		{"memberUid", "alice", nil},
		{"memberUid", "*", nil},
	} {
		cfg := ldapConfig(s)
		cfg.GroupStrategy = tc.strategy
		d := newDirectory(t, cfg)
		id, err := d.Lookup(t.Context(), "@"+tc.localpart+":example.org", false)
		if err != nil {
			t.Errorf("%s %q: %v", tc.strategy, tc.localpart, err)
			continue
		}
		if !slices.Equal(id.Groups, tc.want) {
			t.Errorf("%s %q: groups %q, want %q", tc.strategy, tc.localpart, id.Groups, tc.want)
		}
	}
}

func TestIdentity(t *testing.T) {
	s := startDirectory(t)

	t.Run("localpart", func(t *testing.T) {
		d := newDirectory(t, ldapConfig(s))
		id, err := d.Lookup(t.Context(), "@alice:example.org", false)
		if err != nil {
			t.Fatal(err)
		}
		if id.MatrixID != "@alice:example.org" || !sameDN(t, id.DN, "uid=alice,"+people) {
			t.Errorf("identity %+v", id)
		}
		_, err = d.Lookup(t.Context(), "@alice:evil.org", false)
		wantDenial(t, err, "not an LDAP user: server evil.org is not in ldap.localpart_domains")
		_, err = d.Lookup(t.Context(), "@alice:example.org:8448", false)
		wantDenial(t, err, "server example.org:8448 is not in ldap.localpart_domains")
		_, err = d.Lookup(t.Context(), "@nobody:example.org", false)
		wantDenial(t, err, "no LDAP entry for @nobody:example.org")
		for _, bad := range []string{"alice", "@alice", "@:example.org", "@alice:", ""} {
			_, err = d.Lookup(t.Context(), bad, false)
			wantDenial(t, err, "not an LDAP user")
		}
	})

	t.Run("attribute", func(t *testing.T) {
		cfg := ldapConfig(s)
		cfg.Identity, cfg.MatrixIDAttr = "attribute", "matrixId"
		d := newDirectory(t, cfg)
		id, err := d.Lookup(t.Context(), "@alice:example.org", false)
		if err != nil {
			t.Fatal(err)
		}
		if !sameDN(t, id.DN, "uid=alice,"+people) {
			t.Errorf("DN %q", id.DN)
		}
		_, err = d.Lookup(t.Context(), "@twin:example.org", false)
		wantDenial(t, err, "several LDAP entries match @twin:example.org: refusing")
		_, err = d.Lookup(t.Context(), "@bob:example.org", false)
		wantDenial(t, err, "no LDAP entry for @bob:example.org")
		// The attribute holds the whole ID: no server check to pass, and
		// no other server's alice to match.
		_, err = d.Lookup(t.Context(), "@alice:evil.org", false)
		wantDenial(t, err, "no LDAP entry")
		// Wildcards would match every entry, or both twins.
		for _, hostile := range []string{"*", "@twin*", "@*:example.org", "@twin:example.org)(matrixId=*"} {
			_, err = d.Lookup(t.Context(), hostile, false)
			wantDenial(t, err, "no LDAP entry")
		}
	})
}

func TestHostileLocalparts(t *testing.T) {
	s := startDirectory(t)
	d := newDirectory(t, ldapConfig(s))
	for _, tc := range []struct {
		localpart string
		dn        string // "" : no entry
	}{
		{"*", starDN},
		{parenUID, parenDN},
		{nulUID, nulDN},
		{escapeUID, escapeDN},
		{elodie, elodieDN},
		{"al*", ""},
		{"a\x00", ""},
		{"alice\x00", ""},
		{"alice)(uid=bob", ""},
		{"*)(objectClass=*", ""},
		{`\2a\00`, ""},
		{`alice\`, ""},
	} {
		id, err := d.Lookup(t.Context(), "@"+tc.localpart+":example.org", true)
		switch {
		case tc.dn == "":
			wantDenial(t, err, "no LDAP entry")
		case err != nil:
			t.Errorf("%q: %v", tc.localpart, err)
		case !sameDN(t, id.DN, tc.dn):
			t.Errorf("%q: DN %q, want %q", tc.localpart, id.DN, tc.dn)
		}
	}
}

func TestTLS(t *testing.T) {
	s := startDirectory(t)
	for _, tc := range []struct {
		name     string
		url      string
		startTLS bool
		caFile   string
		ok       bool
	}{
		{"ldaps", s.LDAPSURL, false, s.CAFile, true},
		{"StartTLS", s.URL, true, s.CAFile, true},
		{"ldaps, unrelated CA", s.LDAPSURL, false, testenv.UnrelatedCAFile(t), false},
		{"StartTLS, unrelated CA", s.URL, true, testenv.UnrelatedCAFile(t), false},
		{"ldaps, system roots", s.LDAPSURL, false, "", false},
		{"ldaps by name", strings.Replace(s.LDAPSURL, "127.0.0.1", "localhost", 1), false, s.CAFile, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ldapConfig(s)
			cfg.URL, cfg.StartTLS, cfg.CAFile = tc.url, tc.startTLS, tc.caFile
			d := newDirectory(t, cfg)
			id, err := d.Lookup(t.Context(), "@alice:example.org", true)
			if !tc.ok {
				wantUnavailable(t, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(id.Groups, deployers) {
				t.Errorf("groups %q", id.Groups)
			}
			if state, ok := d.conn.TLSConnectionState(); !ok || !state.HandshakeComplete {
				t.Error("the service connection is not TLS")
			}
		})
	}
}

func TestBadBindPassword(t *testing.T) {
	s := startDirectory(t)
	cfg := ldapConfig(s)
	cfg.BindPassword = config.NewSecret("wrong-"+servicePassword, "test")
	d := newDirectory(t, cfg)
	_, err := d.Lookup(t.Context(), "@alice:example.org", false)
	wantUnavailable(t, err)
	if !strings.Contains(err.Error(), "service bind as "+serviceDN) {
		t.Errorf("error %q does not say the service bind failed", err)
	}
}

// A base DN that does not exist is the configuration's fault, not the
// user's: "cannot check", not "you are not a user".
func TestMissingBaseDN(t *testing.T) {
	s := startDirectory(t)
	cfg := ldapConfig(s)
	cfg.UserBaseDN = "ou=staff,dc=example,dc=org"
	_, err := newDirectory(t, cfg).Lookup(t.Context(), "@alice:example.org", false)
	wantUnavailable(t, err)

	cfg = ldapConfig(s)
	cfg.GroupStrategy, cfg.GroupBaseDN = "member", "ou=teams,dc=example,dc=org"
	_, err = newDirectory(t, cfg).Lookup(t.Context(), "@alice:example.org", false)
	wantUnavailable(t, err)
}

func TestServerDown(t *testing.T) {
	s := startDirectory(t)
	cfg := ldapConfig(s)
	cfg.Timeout.Duration = 2 * time.Second
	d := newDirectory(t, cfg)
	if _, err := d.Lookup(t.Context(), "@alice:example.org", false); err != nil {
		t.Fatal(err)
	}

	s.Stop()
	start := time.Now()
	_, err := d.Lookup(t.Context(), "@alice:example.org", true)
	wantUnavailable(t, err)
	if took := time.Since(start); took > cfg.Timeout.Duration {
		t.Errorf("refused after %s, more than the %s timeout", took, cfg.Timeout)
	}
	// The cache still answers StepRun-style lookups for a while.
	if _, err := d.Lookup(t.Context(), "@alice:example.org", false); err != nil {
		t.Errorf("cached lookup while down: %v", err)
	}
	if _, err := d.Lookup(t.Context(), "@bob:example.org", false); !errors.Is(err, commands.ErrUnavailable) {
		t.Errorf("uncached lookup while down: %v, want ErrUnavailable", err)
	}

	s.Restart(t)
	if _, err := d.Lookup(t.Context(), "@alice:example.org", true); err != nil {
		t.Errorf("after restart: %v", err)
	}
}

func TestServerHangs(t *testing.T) {
	s := startDirectory(t)
	cfg := ldapConfig(s)
	cfg.Timeout.Duration = 500 * time.Millisecond
	d := newDirectory(t, cfg)
	if _, err := d.Lookup(t.Context(), "@alice:example.org", false); err != nil {
		t.Fatal(err)
	}

	s.Pause(t)
	// Three at once: the ones queued behind the first are bounded by
	// their own deadline, not by the first one's.
	start := time.Now()
	errs := make(chan error, 3)
	for _, user := range []string{"alice", "bob", "carol"} {
		go func() {
			_, err := d.Lookup(t.Context(), "@"+user+":example.org", true)
			errs <- err
		}()
	}
	for range 3 {
		err := <-errs
		wantUnavailable(t, err)
		if !strings.Contains(err.Error(), "did not answer within 500ms") {
			t.Errorf("error %q does not say LDAP was too slow", err)
		}
	}
	if took := time.Since(start); took > cfg.Timeout.Duration+time.Second {
		t.Errorf("refused after %s with a %s timeout", took, cfg.Timeout)
	}

	s.Resume(t)
	if _, err := d.Lookup(t.Context(), "@alice:example.org", true); err != nil {
		t.Errorf("after resume: %v", err)
	}
}

// cutProxy forwards TCP to a server and can break the connection in use
// without the client noticing until it sends its next request, as a
// server restart behind a load balancer or an expired firewall state
// does.
type cutProxy struct {
	addr string

	mu       sync.Mutex
	cut      bool
	accepted int
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &cutProxy{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.accepted++
			p.mu.Unlock()
			go p.serve(c, target)
		}
	}()
	return p
}

func (p *cutProxy) serve(client net.Conn, target string) {
	defer client.Close()
	server, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer server.Close()
	go func() {
		_, _ = io.Copy(client, server)
		client.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.cut = false
		p.mu.Unlock()
		if cut {
			return
		}
		if _, err := server.Write(buf[:n]); err != nil {
			return
		}
	}
}

// cutNextRequest makes the next request close its connection unanswered.
func (p *cutProxy) cutNextRequest() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
}

func (p *cutProxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

func TestRedialOnce(t *testing.T) {
	s := startDirectory(t)
	proxy := startCutProxy(t, strings.TrimPrefix(s.URL, "ldap://"))
	cfg := ldapConfig(s)
	cfg.URL = "ldap://" + proxy.addr
	d := newDirectory(t, cfg)
	if _, err := d.Lookup(t.Context(), "@alice:example.org", true); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Lookup(t.Context(), "@alice:example.org", true); err != nil {
		t.Fatal(err)
	}
	if n := proxy.connections(); n != 1 {
		t.Fatalf("%d connections for two lookups, want the service connection reused", n)
	}

	proxy.cutNextRequest()
	if _, err := d.Lookup(t.Context(), "@alice:example.org", true); err != nil {
		t.Fatalf("lookup on a broken connection was not retried: %v", err)
	}
	if n := proxy.connections(); n != 2 {
		t.Errorf("%d connections, want one redial", n)
	}
}

func TestCache(t *testing.T) {
	s := startDirectory(t)
	d := newDirectory(t, ldapConfig(s))
	now := time.Now()
	d.now = func() time.Time { return now }
	groups := func(fresh bool) []string {
		t.Helper()
		id, err := d.Lookup(t.Context(), "@alice:example.org", fresh)
		if err != nil {
			t.Fatal(err)
		}
		return id.Groups
	}
	membership := func(change string) {
		t.Helper()
		if err := s.Apply(t.Context(), "dn: "+cacheTest+"\nchangetype: modify\n"+change+": member\nmember: uid=alice,"+people+"\n"); err != nil {
			t.Fatal(err)
		}
	}

	if !slices.Contains(groups(false), cacheTest) {
		t.Fatal("alice starts outside cachetest")
	}
	membership("delete")
	if !slices.Contains(groups(false), cacheTest) {
		t.Error("fresh=false asked LDAP instead of the cache")
	}
	if slices.Contains(groups(true), cacheTest) {
		t.Error("fresh=true still sees the removed group")
	}
	if slices.Contains(groups(false), cacheTest) {
		t.Error("fresh=true did not refresh the cache")
	}

	membership("add")
	if slices.Contains(groups(false), cacheTest) {
		t.Error("cache entry ignored before its TTL")
	}
	now = now.Add(time.Minute)
	if !slices.Contains(groups(false), cacheTest) {
		t.Error("cache entry used after its TTL")
	}

	t.Run("cache_ttl 0", func(t *testing.T) {
		cfg := ldapConfig(s)
		cfg.CacheTTL.Duration = 0
		d := newDirectory(t, cfg)
		if _, err := d.Lookup(t.Context(), "@alice:example.org", false); err != nil {
			t.Fatal(err)
		}
		membership("delete")
		id, err := d.Lookup(t.Context(), "@alice:example.org", false)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(id.Groups, cacheTest) {
			t.Error("cache_ttl 0 reused a lookup")
		}
	})
}
