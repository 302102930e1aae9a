package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/vigie/vigie/auth"
	"github.com/vigie/vigie/config"
)

type ldapProbe struct {
	cfg    config.LDAP
	dir    *auth.Directory
	user   string // --user: the Matrix user to look up; "" to find one
	policy config.Policy
	conn   *Lazy[*ldap.Conn]
	// sample is the Matrix ID of the user the group lookup checks.
	sample *Lazy[string]
}

func ldapChecks(p *Plan, cfg *config.Config, user string) {
	const comp = "ldap"
	if cfg.LDAP.URL == "" {
		p.Add(Check{Component: comp, Name: "directory", Run: func(context.Context) Result {
			return Skip("ldap.url is not set: only public commands (and reads with policy.read_open) run")
		}})
		return
	}
	l := &ldapProbe{cfg: cfg.LDAP, user: user, policy: cfg.Policy}
	dir, dirErr := auth.NewDirectory(cfg.LDAP)
	if dirErr == nil {
		l.dir = dir
		p.OnClose(func(context.Context) { _ = dir.Close() })
	}
	l.conn = NewLazy(l.bind)
	p.OnClose(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if c, ok := l.conn.Wait(ctx); ok {
			_ = c.Close()
		}
	})
	l.sample = NewLazy(l.findUser)

	p.Add(Check{Component: comp, Name: "bind", Run: func(ctx context.Context) Result {
		if dirErr != nil {
			return Fail("%v", dirErr)
		}
		if _, err := l.conn.Get(ctx); err != nil {
			return Fail("%v", err)
		}
		how := "plain ldap://"
		switch {
		case strings.HasPrefix(l.cfg.URL, "ldaps://"):
			how = "ldaps"
		case l.cfg.StartTLS:
			how = "StartTLS"
		}
		if how == "plain ldap://" && !loopbackURL(l.cfg.URL) {
			return Warn("bound as %s over plain ldap://: the password travels unencrypted; use ldaps:// or start_tls", l.cfg.BindDN)
		}
		return OK("bound as %s (%s)", l.cfg.BindDN, how)
	}})
	name := "sample user"
	if user != "" {
		name = "user " + user
	}
	p.Add(Check{Component: comp, Name: name, Run: l.userCheck})
	p.Add(Check{Component: comp, Name: "groups (" + cfg.LDAP.GroupStrategy + ")", Run: func(ctx context.Context) Result {
		return l.groupsCheck(ctx, cfg.Policy)
	}})
	p.Add(Check{Component: comp, Name: "policy groups", Run: func(ctx context.Context) Result {
		return l.policyGroupsCheck(ctx, cfg.Policy)
	}})
}

// bind connects and binds as the service account, as auth.Directory
// does, on a connection of the doctor's own for the searches below.
func (l *ldapProbe) bind(ctx context.Context) (*ldap.Conn, error) {
	u, err := url.Parse(l.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("ldap.url %q: %w", l.cfg.URL, err)
	}
	tc := &tls.Config{ServerName: u.Hostname()}
	if l.cfg.CAFile != "" {
		pem, err := os.ReadFile(l.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ldap.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ldap.ca_file: %s holds no PEM certificate", l.cfg.CAFile)
		}
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	conn, err := ldap.DialURL(l.cfg.URL, ldap.DialWithDialer(&net.Dialer{Deadline: deadline}), ldap.DialWithTLSConfig(tc))
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %v (check ldap.url, and ldap.ca_file for TLS)", l.cfg.URL, explainTLS(err))
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	conn.SetTimeout(time.Until(deadline))
	if l.cfg.StartTLS {
		if err := conn.StartTLS(tc); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("StartTLS with %s: %v (check ldap.ca_file, or that the server offers StartTLS)", l.cfg.URL, explainTLS(err))
		}
	}
	if err := conn.Bind(l.cfg.BindDN, l.cfg.BindPassword.Reveal()); err != nil {
		_ = conn.Close()
		hint := ""
		switch {
		case ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials):
			hint = ": wrong password, or no such account; check ldap.bind_dn and ldap.bind_password_file (or VIGIE_LDAP_BIND_PASSWORD)"
		case ldap.IsErrorWithCode(err, ldap.LDAPResultConfidentialityRequired):
			hint = ": the server wants TLS first; use ldaps:// or start_tls = true"
		}
		return nil, fmt.Errorf("service bind as %s refused (%s)%s", l.cfg.BindDN, strings.TrimRight(err.Error(), ": "), hint)
	}
	return conn, nil
}

// explainTLS names what to check on a TLS failure.
func explainTLS(err error) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%w (its certificate is not signed by a CA Vigie trusts: set ldap.ca_file)", err)
	case errors.As(err, &host):
		return fmt.Errorf("%w (the certificate is for another name: use that name in ldap.url)", err)
	}
	return err
}

// userFilter is ldap.user_filter with its parentheses, "" if none.
func (l *ldapProbe) userFilter() string {
	f := strings.TrimSpace(l.cfg.UserFilter)
	if f != "" && !strings.HasPrefix(f, "(") {
		f = "(" + f + ")"
	}
	return f
}

// idAttribute is the attribute a Matrix ID maps to.
func (l *ldapProbe) idAttribute() string {
	if l.cfg.Identity == "attribute" {
		return l.cfg.MatrixIDAttr
	}
	return l.cfg.LocalpartAttr
}

// findUser returns the Matrix ID of the user to check: --user, else a
// member of a group the policy names (so that the group line tells
// whether the group strategy finds it), else the first entry under
// user_base_dn that user_filter keeps.
func (l *ldapProbe) findUser(ctx context.Context) (string, error) {
	if l.user != "" {
		return l.user, nil
	}
	conn, err := l.conn.Get(ctx)
	if err != nil {
		return "", err
	}
	attr := l.idAttribute()
	base := "(" + attr + "=*)"
	if f := l.userFilter(); f != "" {
		base = "(&" + f + base + ")"
	}
	entry, err := l.policyMember(conn, base)
	if err != nil {
		return "", err
	}
	if entry == nil {
		entry, err = l.firstUser(conn, l.cfg.UserBaseDN, ldap.ScopeWholeSubtree, base)
		if err != nil {
			return "", err
		}
	}
	if entry == nil {
		return "", fmt.Errorf("no entry under %s matches %s: check ldap.user_base_dn, user_filter and %s", l.cfg.UserBaseDN, base,
			map[bool]string{true: "matrix_id_attribute", false: "localpart_attribute"}[l.cfg.Identity == "attribute"])
	}
	v := entry.GetEqualFoldAttributeValue(attr)
	if l.cfg.Identity == "attribute" {
		return v, nil
	}
	if len(l.cfg.LocalpartDomains) == 0 {
		return "", errors.New("ldap.localpart_domains is empty")
	}
	return "@" + v + ":" + l.cfg.LocalpartDomains[0], nil
}

// firstUser is the first entry a search finds, nil if none.
func (l *ldapProbe) firstUser(conn *ldap.Conn, base string, scope int, filter string) (*ldap.Entry, error) {
	res, err := conn.Search(ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases,
		1, 0, false, filter, []string{l.idAttribute()}, nil))
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) && scope == ldap.ScopeBaseObject:
		return nil, nil // a member DN that is gone
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		return nil, fmt.Errorf("searching %s: %v: ldap.user_base_dn does not exist", base, err)
	case err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded):
		return nil, fmt.Errorf("searching %s for %s: %v", base, filter, err)
	case res == nil || len(res.Entries) == 0:
		return nil, nil
	}
	return res.Entries[0], nil
}

// policyMember finds a user in one of the policy's groups, read the way
// the group strategy reads membership; nil if none is found.
func (l *ldapProbe) policyMember(conn *ldap.Conn, userFilter string) (*ldap.Entry, error) {
	var groups []string
	for g := range policyGroups(l.policy) {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	if len(groups) == 0 {
		return nil, nil
	}
	if l.cfg.GroupStrategy == "memberOf" {
		var or strings.Builder
		for _, g := range groups {
			or.WriteString("(memberOf=" + ldap.EscapeFilter(g) + ")")
		}
		return l.firstUser(conn, l.cfg.UserBaseDN, ldap.ScopeWholeSubtree, "(&"+userFilter+"(|"+or.String()+"))")
	}
	memberAttr := map[string]string{"member": "member", "uniqueMember": "uniqueMember", "memberUid": "memberUid"}[l.cfg.GroupStrategy]
	for _, g := range groups {
		res, err := conn.Search(ldap.NewSearchRequest(g, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
			"(objectClass=*)", []string{memberAttr}, nil))
		if err != nil || len(res.Entries) == 0 {
			continue // a missing group is the policy groups line's
		}
		for _, m := range res.Entries[0].GetEqualFoldAttributeValues(memberAttr) {
			var e *ldap.Entry
			if memberAttr == "memberUid" {
				e, err = l.firstUser(conn, l.cfg.UserBaseDN, ldap.ScopeWholeSubtree, "(&"+userFilter+"(uid="+ldap.EscapeFilter(m)+"))")
			} else {
				e, err = l.firstUser(conn, m, ldap.ScopeBaseObject, userFilter)
			}
			if err != nil {
				return nil, err
			}
			if e != nil {
				return e, nil
			}
		}
	}
	return nil, nil
}

func (l *ldapProbe) userCheck(ctx context.Context) Result {
	if l.dir == nil {
		return Skip("the directory configuration is refused (see bind)")
	}
	if l.user == "" {
		if _, err := l.conn.Get(ctx); err != nil {
			return Skip("not bound (see bind)")
		}
	}
	mxid, err := l.sample.Get(ctx)
	if err != nil {
		return Fail("%v", err)
	}
	id, err := l.dir.Lookup(ctx, mxid, true)
	if err != nil {
		return Fail("%s: %v", mxid, err)
	}
	return OK("%s is %s", mxid, id.DN)
}

func (l *ldapProbe) groupsCheck(ctx context.Context, pol config.Policy) Result {
	if l.dir == nil {
		return Skip("the directory configuration is refused (see bind)")
	}
	mxid, err := l.sample.Get(ctx)
	if err != nil {
		return Skip("no user to look up (see above)")
	}
	id, err := l.dir.Lookup(ctx, mxid, true)
	if err != nil {
		return Skip("%s cannot be looked up (see above)", mxid)
	}
	if len(id.Groups) == 0 {
		hint := "if that is unexpected, check ldap.group_base_dn and the groups' member attribute"
		if l.cfg.GroupStrategy == "memberOf" {
			hint = "if that is unexpected, the server may not maintain memberOf (OpenLDAP: the memberof overlay); or use group_strategy = \"member\" with group_base_dn"
		}
		return Warn("%s is in no group: %s", mxid, hint)
	}
	var inPolicy []string
	for _, g := range id.Groups {
		if policyGroups(pol)[g] {
			inPolicy = append(inPolicy, g)
		}
	}
	detail := fmt.Sprintf("%s is in %d group(s)", mxid, len(id.Groups))
	if len(inPolicy) > 0 {
		detail += ", of the policy's: " + strings.Join(inPolicy, "; ")
	} else if len(pol.Rules) > 0 {
		detail += ", none of them named by a policy rule"
	}
	return OK("%s", detail)
}

// policyGroups are the group DNs the policy rules name, normalised as the
// directory returns them.
func policyGroups(pol config.Policy) map[string]bool {
	out := map[string]bool{}
	for _, r := range pol.Rules {
		for _, g := range slices.Concat(r.Groups, r.Approvers) {
			if dn, err := ldap.ParseDN(g); err == nil {
				out[dn.String()] = true
			}
		}
	}
	return out
}

// policyGroupsCheck checks that every group a policy rule names exists: a
// misspelt DN silently matches nobody.
func (l *ldapProbe) policyGroupsCheck(ctx context.Context, pol config.Policy) Result {
	var groups []string
	for _, r := range pol.Rules {
		for _, g := range slices.Concat(r.Groups, r.Approvers) {
			if !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
		}
	}
	if len(groups) == 0 {
		return Skip("no policy rule names a group")
	}
	conn, err := l.conn.Get(ctx)
	if err != nil {
		return Skip("not bound (see bind)")
	}
	var missing []string
	for _, g := range groups {
		_, err := conn.Search(ldap.NewSearchRequest(g, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
			"(objectClass=*)", []string{"1.1"}, nil))
		switch {
		case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
			missing = append(missing, g)
		case err != nil:
			return Fail("looking up %s: %v", g, err)
		}
	}
	if len(missing) > 0 {
		return Warn("%d of %d groups do not exist (or the service account may not see them), so their rules match nobody: %s",
			len(missing), len(groups), strings.Join(missing, "; "))
	}
	return OK("the %d groups of the policy rules exist", len(groups))
}
