package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// TLS says how Vigie checks a server it reaches over HTTPS, and proves
// itself when the server asks (mutual TLS). Certificates are always
// verified: against ca_file when set, else the system's roots.
type TLS struct {
	CAFile     string `toml:"ca_file"`     // PEM bundle of the CAs that sign the server's certificate
	CertFile   string `toml:"cert_file"`   // PEM client certificate, for servers that require one
	KeyFile    string `toml:"key_file"`    // its PEM private key
	ServerName string `toml:"server_name"` // name to verify instead of the address's host
}

// Client builds the TLS client configuration, reading the files. Errors
// name the file and what is wrong with it.
func (t TLS) Client() (*tls.Config, error) {
	roots, err := t.roots()
	if err != nil {
		return nil, err
	}
	certs, err := t.certificates()
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, RootCAs: roots, Certificates: certs}, nil
}

// roots are the CAs of ca_file, or nil for the system's.
func (t TLS) roots() (*x509.CertPool, error) {
	if t.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", t.CAFile)
	}
	return pool, nil
}

// certificates is the client certificate, if any.
func (t TLS) certificates() ([]tls.Certificate, error) {
	switch {
	case t.CertFile == "" && t.KeyFile == "":
		return nil, nil
	case t.CertFile == "" || t.KeyFile == "":
		return nil, errors.New("a client certificate needs both cert_file and key_file")
	}
	pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("client certificate %s with key %s: %w", t.CertFile, t.KeyFile, err)
	}
	return []tls.Certificate{pair}, nil
}

// validateTLS checks a server's TLS settings: files that load, and an
// https address to use them with.
func (c *Config) validateTLS(d *decoder, table, address string, t TLS) {
	if _, err := t.roots(); err != nil {
		d.add(table+".tls.ca_file", "%v", err)
	}
	if _, err := t.certificates(); err != nil {
		key := table + ".tls.cert_file"
		if t.CertFile == "" {
			key = table + ".tls.key_file"
		}
		d.add(key, "%v", err)
	}
	if (t.CAFile != "" || t.CertFile != "") && strings.HasPrefix(address, "http://") {
		d.add(table+".address", "is %s, but %s.tls is set: use https://", address, table)
	}
}
