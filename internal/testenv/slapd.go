package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// The Debian slapd package's layout: the harness loads the stock schemas
// and modules, it ships none of its own.
const (
	slapdBinary    = "/usr/sbin/slapd"
	slapdSchemaDir = "/etc/ldap/schema"
	slapdModuleDir = "/usr/lib/ldap"
)

// SlapdSuffix is the naming context of every test directory; SlapdAdminDN
// is its root DN, which bypasses access control.
const (
	SlapdSuffix  = "dc=example,dc=org"
	SlapdAdminDN = "cn=admin," + SlapdSuffix
)

// MatrixIDSchema defines matrixId, a user's full Matrix ID compared exactly
// (Matrix IDs are case-sensitive), and the auxiliary class matrixUser that
// carries it, for identity = "attribute". No standard schema has such an
// attribute; load it with WithSlapdSchema. The OIDs are under 2.25 (UUID
// based), so they clash with nothing registered.
const MatrixIDSchema = `
attributetype ( 2.25.29865808286826299832482176753092041050.1 NAME 'matrixId'
	DESC 'Matrix user ID, @localpart:server'
	EQUALITY caseExactMatch
	SUBSTR caseExactSubstringsMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )

objectclass ( 2.25.29865808286826299832482176753092041050.2 NAME 'matrixUser'
	DESC 'An entry with a Matrix account'
	SUP top AUXILIARY
	MAY matrixId )
`

// slapdReadyTimeout bounds how long slapd may take to accept a bind. It
// normally needs a few tens of milliseconds.
const slapdReadyTimeout = 30 * time.Second

type slapdOptions struct {
	schemas []string
}

// SlapdOption configures StartSlapd.
type SlapdOption func(*slapdOptions)

// WithSlapdSchema loads extra schema definitions (slapd.conf syntax:
// attributetype and objectclass statements), after core, cosine,
// inetorgperson and nis.
func WithSlapdSchema(schema string) SlapdOption {
	return func(o *slapdOptions) { o.schemas = append(o.schemas, schema) }
}

// Slapd is a running OpenLDAP server, private to one test. Its database
// is SlapdSuffix with the memberOf overlay (groupOfNames/member maintain
// the users' memberOf). Anonymous users may only bind; any authenticated
// user may read everything but passwords.
type Slapd struct {
	URL           string // ldap://127.0.0.1:PORT, plain or for StartTLS
	LDAPSURL      string // ldaps://127.0.0.1:PORT
	CAFile        string // PEM of the throwaway CA that signed the server certificate
	AdminDN       string // SlapdAdminDN
	AdminPassword string

	dir      string
	confPath string
	pwPath   string // AdminPassword for ldapmodify -y
	hosts    string // slapd -h argument

	process
}

// StartSlapd starts a fresh slapd with its configuration, certificates and
// database in t.TempDir(), listening on free loopback ports for ldap:// and
// ldaps://, creates the suffix entry, adds ldif (LDIF; entries without a
// changetype are added) through the running server so the memberOf overlay
// sees it, and stops slapd at cleanup. Without the slapd and ldap-utils
// packages it skips loudly, or fails with VIGIE_INTEGRATION=require.
func StartSlapd(t testing.TB, ldif string, opts ...SlapdOption) *Slapd {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIPPING integration test in -short mode")
	}
	var o slapdOptions
	for _, opt := range opts {
		opt(&o)
	}
	slapd := slapdBinary
	if _, err := os.Stat(slapd); err != nil {
		unavailable(t, "slapd", fmt.Sprintf("%s: %v (apt-get install slapd)", slapd, err))
	}
	if _, err := exec.LookPath("ldapmodify"); err != nil {
		unavailable(t, "slapd", "ldapmodify is not on PATH (apt-get install ldap-utils)")
	}

	dir := t.TempDir()
	s := &Slapd{
		AdminDN:       SlapdAdminDN,
		AdminPassword: rand.Text(),
		dir:           dir,
		confPath:      filepath.Join(dir, "slapd.conf"),
		process:       process{name: "slapd", logPath: filepath.Join(dir, "slapd.log")},
		pwPath:        filepath.Join(dir, "admin.pw"),
	}
	if err := s.writeConfig(o); err != nil {
		t.Fatal(err)
	}
	s.stopAtCleanup(t)
	start := time.Now()
	s.startRetrying(t, func() error {
		ldapAddr, ldapsAddr := FreeLoopbackAddr(t), FreeLoopbackAddr(t)
		s.URL, s.LDAPSURL = "ldap://"+ldapAddr, "ldaps://"+ldapsAddr
		s.hosts = s.URL + "/ " + s.LDAPSURL + "/"
		return s.launch()
	})

	ctx, cancel := context.WithTimeout(t.Context(), slapdReadyTimeout)
	defer cancel()
	base := "dn: " + SlapdSuffix + "\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"
	if err := s.Apply(ctx, base+"\n"+ldif); err != nil {
		t.Fatalf("loading the test directory: %v", err)
	}
	t.Logf("slapd ready at %s and %s in %s", s.URL, s.LDAPSURL, time.Since(start).Round(time.Millisecond))
	return s
}

// writeConfig writes the certificates, the schemas, the admin password
// file and slapd.conf into s.dir.
func (s *Slapd) writeConfig(o slapdOptions) error {
	ca, err := newTestCA()
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.issue("127.0.0.1", "localhost")
	if err != nil {
		return err
	}
	s.CAFile = filepath.Join(s.dir, "ca.pem")
	certFile := filepath.Join(s.dir, "server.pem")
	keyFile := filepath.Join(s.dir, "server.key")
	dataDir := filepath.Join(s.dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return err
	}
	files := map[string][]byte{
		s.CAFile: ca.certPEM,
		certFile: certPEM,
		keyFile:  keyPEM,
		// ldapmodify -y sends the file's bytes verbatim: no newline.
		s.pwPath: []byte(s.AdminPassword),
	}

	var conf strings.Builder
	for _, name := range []string{"core", "cosine", "inetorgperson", "nis"} {
		fmt.Fprintf(&conf, "include %s\n", filepath.Join(slapdSchemaDir, name+".schema"))
	}
	for i, schema := range o.schemas {
		path := filepath.Join(s.dir, fmt.Sprintf("extra%d.schema", i))
		files[path] = []byte(schema)
		fmt.Fprintf(&conf, "include %s\n", path)
	}
	// A cleartext rootpw is fine for a throwaway server and spares a
	// slappasswd run.
	fmt.Fprintf(&conf, `
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath %[2]s
moduleload back_mdb
moduleload memberof

TLSCACertificateFile %[3]s
TLSCertificateFile %[4]s
TLSCertificateKeyFile %[5]s

database mdb
suffix "%[6]s"
rootdn "%[7]s"
rootpw "%[8]s"
directory %[9]s
maxsize 67108864

# Vigie's service account must bind: nothing is readable anonymously.
access to attrs=userPassword
	by self =xw
	by anonymous auth
	by * none
access to *
	by users read
	by * none

# memberOf is maintained only for adds and modifies made while the overlay
# runs, which is why StartSlapd loads data through the server.
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
`, s.dir, slapdModuleDir, s.CAFile, certFile, keyFile, SlapdSuffix, SlapdAdminDN, s.AdminPassword, dataDir)
	files[s.confPath] = []byte(conf.String())

	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// launch starts slapd on s.hosts and waits until the admin can bind, which
// needs both the listener and the database.
func (s *Slapd) launch() error {
	// -d keeps slapd in the foreground and logs to stderr; 256 ("stats")
	// logs connections, binds and searches, which is what a failed test
	// needs to see.
	cmd := exec.Command(slapdBinary, "-d", "256", "-f", s.confPath, "-h", s.hosts)
	cmd.Dir = s.dir
	return s.start(cmd, slapdReadyTimeout, s.adminBind)
}

func (s *Slapd) adminBind() error {
	conn, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetTimeout(time.Second)
	return conn.Bind(s.AdminDN, s.AdminPassword)
}

// Apply runs LDIF against the server as the admin, with ldapmodify -a:
// entries without a changetype are added, "changetype: modify" records
// change existing entries (e.g. remove a member from a group). The error
// carries ldapmodify's output.
func (s *Slapd) Apply(ctx context.Context, ldif string) error {
	cmd := exec.CommandContext(ctx, "ldapmodify", "-a", "-x", "-H", s.URL, "-D", s.AdminDN, "-y", s.pwPath)
	cmd.Stdin = strings.NewReader(ldif)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ldapmodify: %w\n%s", err, tail(out.Bytes(), 20))
	}
	return nil
}

// Restart starts slapd again after Stop, on the same ports and with the
// same data.
func (s *Slapd) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.launch(); err != nil {
		s.Stop()
		t.Fatalf("slapd did not restart: %v\n%s", err, s.LogTail(40))
	}
}

// Pause freezes slapd (SIGSTOP): connections are still accepted by the
// kernel but nothing is answered, like a hung server. Resume undoes it.
func (s *Slapd) Pause(t testing.TB) {
	s.signal(t, syscall.SIGSTOP)
	// The signal is delivered asynchronously: wait until the process is
	// really stopped, or a request sent right after may still be served.
	stat := fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(stat)
		// The state follows the ")" closing the command name.
		if i := strings.LastIndexByte(string(b), ')'); err == nil && i > 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't') {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slapd did not stop after SIGSTOP (%s: %q, %v)", stat, b, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// Resume continues a paused slapd.
func (s *Slapd) Resume(t testing.TB) { s.signal(t, syscall.SIGCONT) }

func (s *Slapd) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		t.Fatalf("slapd is not running, cannot send %v", sig)
	}
	if err := syscall.Kill(s.cmd.Process.Pid, sig); err != nil {
		t.Fatalf("signal slapd: %v", err)
	}
}

// UnrelatedCAFile writes a fresh CA certificate that signed nothing the
// harness serves, for tests that must see TLS verification fail.
func UnrelatedCAFile(t testing.TB) string {
	t.Helper()
	ca, err := newTestCA()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "unrelated-ca.pem")
	if err := os.WriteFile(path, ca.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testCA is a throwaway certificate authority, generated per test so no
// key ever lives in the repository.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newTestCA() (*testCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "Vigie test CA " + rand.Text()[:8]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &testCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// issue signs a server certificate for the given IP address and DNS name.
func (ca *testCA) issue(ip, dnsName string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: dnsName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP(ip)},
		DNSNames:     []string{dnsName},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}
