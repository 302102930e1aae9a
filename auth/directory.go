// Package auth decides who may run which chat command. Directory maps a
// Matrix user to their LDAP entry and groups; Policy applies the [policy]
// rules to them. Both fail closed: when the directory cannot be asked,
// the answer is no.
package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/rs/zerolog"

	"github.com/vigie/vigie/commands"
	"github.com/vigie/vigie/config"
)

// Identity is a Matrix user as the directory knows them.
type Identity struct {
	MatrixID string
	DN       string   // the user's entry, as the server spells it
	Groups   []string // group DNs in ldap.DN.String form (attribute types lower-cased)
}

// Directory looks users up in LDAP through one service connection, and
// caches what it finds.
type Directory struct {
	cfg        config.LDAP
	tls        *tls.Config
	userFilter string // cfg.UserFilter with its parentheses, "" if none
	now        func() time.Time

	// sem is held while the connection is in use, so there is one lookup
	// at a time and a redial never races a search; a channel rather than
	// a mutex because waiting for it must respect the caller's deadline.
	sem  chan struct{}
	conn *ldap.Conn // nil until dialed or after a failure

	mu    sync.Mutex
	cache map[string]cacheEntry
}

type cacheEntry struct {
	id      Identity
	expires time.Time
}

// NewDirectory checks cfg (as resolved by config.Load, bind password
// included) and returns a Directory. It does not connect: the first
// lookup does, so Vigie starts while LDAP is down.
func NewDirectory(cfg config.LDAP) (*Directory, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Hostname() == "" || (u.Scheme != "ldap" && u.Scheme != "ldaps") {
		return nil, fmt.Errorf("ldap.url: must be ldap://host:389 or ldaps://host:636, got %q", cfg.URL)
	}
	if u.Scheme == "ldaps" && cfg.StartTLS {
		return nil, errors.New("ldap.start_tls: StartTLS is for ldap:// URLs; ldaps:// is already encrypted")
	}
	if cfg.Timeout.Duration <= 0 {
		return nil, errors.New("ldap.timeout: must be greater than 0")
	}
	if cfg.BindDN == "" || !cfg.BindPassword.IsSet() {
		// An empty password would be an unauthenticated bind, which
		// go-ldap refuses anyway: say so at startup, not per command.
		return nil, errors.New("ldap: bind_dn and its password (bind_password_file or VIGIE_LDAP_BIND_PASSWORD) are required")
	}
	if cfg.UserBaseDN == "" {
		return nil, errors.New("ldap.user_base_dn: must be set")
	}
	switch cfg.Identity {
	case "localpart":
		if cfg.LocalpartAttr == "" || len(cfg.LocalpartDomains) == 0 {
			return nil, errors.New(`ldap: identity = "localpart" needs localpart_attribute and localpart_domains`)
		}
	case "attribute":
		if cfg.MatrixIDAttr == "" {
			return nil, errors.New(`ldap: identity = "attribute" needs matrix_id_attribute`)
		}
	default:
		return nil, fmt.Errorf(`ldap.identity: must be "localpart" or "attribute", got %q`, cfg.Identity)
	}
	switch cfg.GroupStrategy {
	case "memberOf":
	case "member", "uniqueMember", "memberUid":
		if cfg.GroupBaseDN == "" {
			return nil, fmt.Errorf("ldap.group_base_dn: must be set with group_strategy %q", cfg.GroupStrategy)
		}
	default:
		return nil, fmt.Errorf("ldap.group_strategy: must be memberOf, member, uniqueMember or memberUid, got %q", cfg.GroupStrategy)
	}

	// ServerName is set explicitly because StartTLS, unlike ldaps://,
	// has no address to infer it from; an IP address is checked against
	// the certificate's IP SANs.
	tlsCfg := &tls.Config{ServerName: u.Hostname()}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ldap.ca_file: %w", err)
		}
		tlsCfg.RootCAs = x509.NewCertPool()
		if !tlsCfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ldap.ca_file: %s holds no PEM certificate", cfg.CAFile)
		}
	}

	d := &Directory{cfg: cfg, tls: tlsCfg, now: time.Now, sem: make(chan struct{}, 1), cache: map[string]cacheEntry{}}
	if f := strings.TrimSpace(cfg.UserFilter); f != "" {
		if !strings.HasPrefix(f, "(") {
			f = "(" + f + ")"
		}
		// Checked alone too: inside a larger filter, go-ldap reads a
		// missing ")" as part of the next value.
		if _, err := ldap.CompileFilter(f); err != nil {
			return nil, fmt.Errorf("ldap.user_filter: %w", err)
		}
		d.userFilter = f
	}
	// Compile a filter built the way lookups build them, so a broken
	// attribute name shows at startup.
	probe := "@probe:example.org"
	if cfg.Identity == "localpart" {
		probe = "@probe:" + cfg.LocalpartDomains[0]
	}
	filter, err := d.filterFor(probe)
	if err == nil {
		_, err = ldap.CompileFilter(filter)
	}
	if err != nil {
		return nil, fmt.Errorf("ldap: localpart_attribute or matrix_id_attribute: %w", err)
	}
	return d, nil
}

// Lookup finds matrixID's entry and groups. With fresh, the cache is
// bypassed and refreshed; otherwise an entry younger than cache_ttl is
// reused. An error wrapping commands.ErrUnavailable means the directory
// could not be asked; any other error is an answer (no such user, several
// users), to be shown to the user as a refusal.
func (d *Directory) Lookup(ctx context.Context, matrixID string, fresh bool) (Identity, error) {
	filter, err := d.filterFor(matrixID)
	if err != nil {
		return Identity{}, err
	}
	if !fresh {
		if id, ok := d.cached(matrixID); ok {
			return id, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout.Duration)
	defer cancel()
	id, err := d.query(ctx, matrixID, filter)
	switch {
	case err == nil:
		d.remember(id)
	case !errors.Is(err, commands.ErrUnavailable):
		// The directory says this user is not (or no longer) a user: a
		// cached yes must not outlive that.
		d.forget(matrixID)
	}
	return id, err
}

// Close closes the service connection, after the lookup in progress if
// any (at most ldap.timeout). Lookups after Close redial.
func (d *Directory) Close() error {
	d.sem <- struct{}{}
	defer func() { <-d.sem }()
	if d.conn == nil {
		return nil
	}
	err := d.conn.Close()
	d.conn = nil
	return err
}

// filterFor maps a Matrix user ID to the filter that finds its entry.
// Every value from the user ID goes through ldap.EscapeFilter.
func (d *Directory) filterFor(matrixID string) (string, error) {
	var cond string
	switch d.cfg.Identity {
	case "attribute":
		cond = "(" + d.cfg.MatrixIDAttr + "=" + ldap.EscapeFilter(matrixID) + ")"
	default: // "localpart", as NewDirectory checked
		// A user ID is @localpart:server and the localpart has no colon;
		// the server part may (a port).
		local, server, ok := strings.Cut(strings.TrimPrefix(matrixID, "@"), ":")
		if !strings.HasPrefix(matrixID, "@") || !ok || local == "" || server == "" {
			return "", fmt.Errorf("not an LDAP user: %q is not a Matrix user ID", matrixID)
		}
		// Exact comparison: another spelling of the server name is
		// another server as far as Matrix IDs go.
		if !slices.Contains(d.cfg.LocalpartDomains, server) {
			return "", fmt.Errorf("not an LDAP user: server %s is not in ldap.localpart_domains", server)
		}
		cond = "(" + d.cfg.LocalpartAttr + "=" + ldap.EscapeFilter(local) + ")"
	}
	if d.userFilter == "" {
		return cond, nil
	}
	return "(&" + d.userFilter + cond + ")", nil
}

func (d *Directory) cached(matrixID string) (Identity, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.cache[matrixID]
	if !ok || !d.now().Before(e.expires) {
		return Identity{}, false
	}
	return e.id, true
}

func (d *Directory) remember(id Identity) {
	ttl := d.cfg.CacheTTL.Duration
	if ttl <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	// Drop expired entries here so the cache never holds more than the
	// users seen within one TTL.
	for k, e := range d.cache {
		if !now.Before(e.expires) {
			delete(d.cache, k)
		}
	}
	d.cache[id.MatrixID] = cacheEntry{id: id, expires: now.Add(ttl)}
}

func (d *Directory) forget(matrixID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.cache, matrixID)
}

// query runs the lookup on the service connection. A connection reused
// from an earlier lookup may have died meanwhile (server restart, idle
// timeout on a firewall): then it redials and tries once more. A fresh
// connection that fails is not retried: the server is down.
func (d *Directory) query(ctx context.Context, matrixID, filter string) (Identity, error) {
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return Identity{}, d.unavailable(ctx, ctx.Err())
	}
	defer func() { <-d.sem }()

	for {
		conn, reused := d.conn, true
		if conn == nil || conn.IsClosing() {
			var err error
			if conn, err = d.dial(ctx); err != nil {
				return Identity{}, d.unavailable(ctx, err)
			}
			d.conn, reused = conn, false
		}
		id, err := d.search(ctx, conn, matrixID, filter)
		if err == nil {
			return id, nil
		}
		var denial *denialError
		if errors.As(err, &denial) {
			return Identity{}, denial
		}
		network := ldap.IsErrorWithCode(err, ldap.ErrorNetwork) || conn.IsClosing()
		// Whatever went wrong, the connection is not trusted again.
		_ = conn.Close()
		d.conn = nil
		if !reused || !network || ctx.Err() != nil {
			return Identity{}, d.unavailable(ctx, err)
		}
		zerolog.Ctx(ctx).Debug().Err(err).Msg("LDAP connection lost; redialing")
	}
}

// dial connects, upgrades with StartTLS if configured, and binds as the
// service account, all before ctx's deadline.
func (d *Directory) dial(ctx context.Context) (*ldap.Conn, error) {
	deadline, _ := ctx.Deadline() // Lookup always sets one
	conn, err := ldap.DialURL(d.cfg.URL, ldap.DialWithDialer(&net.Dialer{Deadline: deadline}), ldap.DialWithTLSConfig(d.tls))
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %w", d.cfg.URL, err)
	}
	// The StartTLS handshake has no timeout of its own; closing the
	// connection is what interrupts it.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	conn.SetTimeout(time.Until(deadline))
	if d.cfg.StartTLS {
		if err := conn.StartTLS(d.tls); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("StartTLS with %s: %w", d.cfg.URL, err)
		}
	}
	// The error names the account, never the password.
	if err := conn.Bind(d.cfg.BindDN, d.cfg.BindPassword.Reveal()); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("service bind as %s: %w", d.cfg.BindDN, err)
	}
	return conn, nil
}

// search finds the user's entry and groups on conn. Entry count problems
// come back as *denialError; anything else is the directory's fault.
func (d *Directory) search(ctx context.Context, conn *ldap.Conn, matrixID, filter string) (Identity, error) {
	// Closing the connection is the only way to abandon requests in
	// flight: it makes them fail at once when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	deadline, _ := ctx.Deadline()
	conn.SetTimeout(time.Until(deadline))
	// The server's own time limit, in whole seconds, so it gives up too.
	timeLimit := int(math.Ceil(time.Until(deadline).Seconds()))

	var attrs []string
	switch d.cfg.GroupStrategy {
	case "memberOf":
		attrs = []string{"memberOf"} // operational in OpenLDAP: only sent on request
	case "memberUid":
		attrs = []string{"uid"}
	default:
		attrs = []string{"1.1"} // RFC 4511: no attributes, the DN is enough
	}
	// Size limit 2: one entry is the answer, a second one is all it takes
	// to refuse.
	res, err := conn.Search(ldap.NewSearchRequest(d.cfg.UserBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, timeLimit, false, filter, attrs, nil))
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || (err == nil && len(res.Entries) > 1):
		return Identity{}, &denialError{fmt.Sprintf("several LDAP entries match %s: refusing", matrixID)}
	case err != nil:
		return Identity{}, fmt.Errorf("searching %s: %w", d.cfg.UserBaseDN, err)
	case len(res.Entries) == 0:
		return Identity{}, &denialError{fmt.Sprintf("no LDAP entry for %s", matrixID)}
	}
	user := res.Entries[0]
	id := Identity{MatrixID: matrixID, DN: user.DN}

	var groupDNs []string
	switch d.cfg.GroupStrategy {
	case "memberOf":
		groupDNs = user.GetEqualFoldAttributeValues("memberOf")
	case "member":
		groupDNs, err = d.searchGroups(conn, timeLimit, "(&(objectClass=groupOfNames)(member="+ldap.EscapeFilter(user.DN)+"))")
	case "uniqueMember":
		groupDNs, err = d.searchGroups(conn, timeLimit, "(&(objectClass=groupOfUniqueNames)(uniqueMember="+ldap.EscapeFilter(user.DN)+"))")
	case "memberUid":
		// posixGroup members are login names: the entry's uid values.
		if uids := user.GetEqualFoldAttributeValues("uid"); len(uids) > 0 {
			var or strings.Builder
			for _, uid := range uids {
				or.WriteString("(memberUid=" + ldap.EscapeFilter(uid) + ")")
			}
			groupDNs, err = d.searchGroups(conn, timeLimit, "(&(objectClass=posixGroup)(|"+or.String()+"))")
		}
	}
	if err != nil {
		return Identity{}, err
	}
	for _, g := range groupDNs {
		// A DN the server sends but we cannot parse could never equal
		// a configured group: leaving it out denies nothing it granted.
		if dn, err := ldap.ParseDN(g); err == nil {
			id.Groups = append(id.Groups, dn.String())
		}
	}
	slices.Sort(id.Groups)
	id.Groups = slices.Compact(id.Groups)
	return id, nil
}

func (d *Directory) searchGroups(conn *ldap.Conn, timeLimit int, filter string) ([]string, error) {
	res, err := conn.Search(ldap.NewSearchRequest(d.cfg.GroupBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, timeLimit, false, filter, []string{"1.1"}, nil))
	if err != nil {
		return nil, fmt.Errorf("searching groups under %s: %w", d.cfg.GroupBaseDN, err)
	}
	dns := make([]string, len(res.Entries))
	for i, e := range res.Entries {
		dns[i] = e.DN
	}
	return dns, nil
}

// unavailable wraps err as the directory's failure; a deadline gets a
// plain explanation, since "connection closed" or "i/o timeout" would hide
// that it was ours. The clock is checked too: the dialer's deadline may
// pass an instant before ctx's timer fires.
func (d *Directory) unavailable(ctx context.Context, err error) error {
	deadline, ok := ctx.Deadline()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || (ok && !time.Now().Before(deadline)) {
		return fmt.Errorf("%w: LDAP did not answer within %s", commands.ErrUnavailable, d.cfg.Timeout)
	}
	return fmt.Errorf("%w: %w", commands.ErrUnavailable, err)
}

// denialError is the directory's answer that a user cannot be identified.
type denialError struct{ msg string }

func (e *denialError) Error() string { return e.msg }
