package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

const slapdTestLDIF = `
dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: matrixUser
uid: alice
cn: Alice
sn: A
matrixId: @alice:example.org
userPassword: alice-password

dn: cn=deployers,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: deployers
member: uid=alice,ou=people,dc=example,dc=org
`

func caPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", path)
	}
	return pool
}

func bindAndReadMemberOf(t *testing.T, conn *ldap.Conn, dn, password string) []string {
	t.Helper()
	conn.SetTimeout(5 * time.Second)
	if err := conn.Bind(dn, password); err != nil {
		t.Fatalf("bind %s: %v", dn, err)
	}
	res, err := conn.Search(ldap.NewSearchRequest("uid=alice,ou=people,"+SlapdSuffix, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", []string{"memberOf"}, nil))
	if err != nil {
		t.Fatalf("search: %v", err)
	}
	return res.Entries[0].GetAttributeValues("memberOf")
}

func TestSlapd(t *testing.T) {
	s := StartSlapd(t, slapdTestLDIF, WithSlapdSchema(MatrixIDSchema))
	wantGroups := []string{"cn=deployers,ou=groups,dc=example,dc=org"}
	tlsCfg := &tls.Config{RootCAs: caPool(t, s.CAFile), ServerName: "127.0.0.1"}

	t.Run("plain, memberOf maintained", func(t *testing.T) {
		conn, err := ldap.DialURL(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if got := bindAndReadMemberOf(t, conn, "uid=alice,ou=people,"+SlapdSuffix, "alice-password"); !slices.Equal(got, wantGroups) {
			t.Errorf("memberOf = %q, want %q", got, wantGroups)
		}
	})

	t.Run("anonymous reads nothing", func(t *testing.T) {
		conn, err := ldap.DialURL(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		res, err := conn.Search(ldap.NewSearchRequest(SlapdSuffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			0, 0, false, "(uid=alice)", nil, nil))
		if err == nil && len(res.Entries) > 0 {
			t.Errorf("anonymous search found %d entries", len(res.Entries))
		}
	})

	t.Run("ldaps", func(t *testing.T) {
		conn, err := ldap.DialURL(s.LDAPSURL, ldap.DialWithTLSConfig(tlsCfg))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if got := bindAndReadMemberOf(t, conn, s.AdminDN, s.AdminPassword); !slices.Equal(got, wantGroups) {
			t.Errorf("memberOf = %q, want %q", got, wantGroups)
		}
	})

	t.Run("StartTLS", func(t *testing.T) {
		conn, err := ldap.DialURL(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.StartTLS(tlsCfg); err != nil {
			t.Fatal(err)
		}
		if _, ok := conn.TLSConnectionState(); !ok {
			t.Fatal("connection not encrypted after StartTLS")
		}
		bindAndReadMemberOf(t, conn, s.AdminDN, s.AdminPassword)
	})

	t.Run("unrelated CA rejected", func(t *testing.T) {
		bad := &tls.Config{RootCAs: caPool(t, UnrelatedCAFile(t)), ServerName: "127.0.0.1"}
		conn, err := ldap.DialURL(s.LDAPSURL, ldap.DialWithTLSConfig(bad))
		if err == nil {
			conn.Close()
			t.Fatal("TLS handshake succeeded with a CA that signed nothing")
		}
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("error %q does not mention the certificate", err)
		}
	})

	t.Run("modify keeps memberOf in step", func(t *testing.T) {
		conn, err := ldap.DialURL(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// groupOfNames must keep a member: the placeholder stays.
		if err := s.Apply(t.Context(), "dn: cn=other,ou=groups,dc=example,dc=org\nobjectClass: groupOfNames\ncn: other\nmember: cn=placeholder\nmember: uid=alice,ou=people,dc=example,dc=org\n"); err != nil {
			t.Fatal(err)
		}
		got := bindAndReadMemberOf(t, conn, s.AdminDN, s.AdminPassword)
		if want := append(slices.Clone(wantGroups), "cn=other,ou=groups,dc=example,dc=org"); !slices.Equal(got, want) {
			t.Errorf("after add: memberOf = %q, want %q", got, want)
		}
		if err := s.Apply(t.Context(), "dn: cn=other,ou=groups,dc=example,dc=org\nchangetype: modify\ndelete: member\nmember: uid=alice,ou=people,dc=example,dc=org\n"); err != nil {
			t.Fatal(err)
		}
		if got := bindAndReadMemberOf(t, conn, s.AdminDN, s.AdminPassword); !slices.Equal(got, wantGroups) {
			t.Errorf("after removal: memberOf = %q, want %q", got, wantGroups)
		}
	})

	t.Run("stop, restart, pause", func(t *testing.T) {
		s.Stop()
		if conn, err := ldap.DialURL(s.URL); err == nil {
			conn.Close()
			t.Fatal("dial succeeded after Stop")
		}
		s.Restart(t)
		conn, err := ldap.DialURL(s.URL)
		if err != nil {
			t.Fatalf("after Restart: %v", err)
		}
		defer conn.Close()
		bindAndReadMemberOf(t, conn, s.AdminDN, s.AdminPassword) // data survived

		s.Pause(t)
		conn.SetTimeout(300 * time.Millisecond)
		start := time.Now()
		err = conn.Bind(s.AdminDN, s.AdminPassword)
		s.Resume(t)
		if err == nil || time.Since(start) > 5*time.Second {
			t.Errorf("bind against a paused slapd: err=%v after %s, want a timeout", err, time.Since(start))
		}
	})
}
