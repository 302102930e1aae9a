// Package tlserr says what to check when a TLS handshake with a server
// fails: Go's errors name the cause but not the setting that fixes it.
package tlserr

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// Explain adds to a TLS failure of the server configured under table
// ("nomad", "consul") which settings to check; other errors are returned
// as they are.
func Explain(err error, table string) error {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var record tls.RecordHeaderError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &unknown):
		return fmt.Errorf("%w (its certificate is not signed by a CA Vigie trusts: check %s.tls.ca_file)", err, table)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w (check the address, or %s.tls.server_name)", err, table)
	case errors.As(err, &invalid):
		return fmt.Errorf("%w (the server's certificate is not valid now or not for a server)", err)
	case errors.As(err, &record):
		return fmt.Errorf("%w (the server does not speak TLS: use an http:// address, or check the port)", err)
	case strings.Contains(err.Error(), "tls: certificate required"), strings.Contains(err.Error(), "tls: bad certificate"),
		strings.Contains(err.Error(), "tls: unknown certificate authority"):
		return fmt.Errorf("%w (the server requires a client certificate it trusts: check %s.tls.cert_file and key_file)", err, table)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%w (the server speaks plain HTTP: use an http:// address)", err)
	}
	return err
}
