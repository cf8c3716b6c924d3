// Package tlsconf builds the tls.Config of a client connection (to Redis,
// to NATS) from the files an operator gives: a private CA, a client
// certificate and key for mutual TLS, the server's name. Its errors name
// the field (ca, cert, key) so that the config can name its key.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Files are a client's TLS settings. The zero value is TLS with the
// system's roots.
type Files struct {
	CA         string // PEM file of the CAs to trust instead of the system's
	Cert, Key  string // PEM files of the client certificate and its key (mutual TLS); both or neither
	ServerName string // the name the server's certificate must carry; default: the host dialled
	// InsecureSkipVerify accepts any server certificate: for tests only.
	InsecureSkipVerify bool
}

// FieldError is a problem with one of the Files.
type FieldError struct {
	Field string // "ca", "cert" or "key"
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Config reads the files and returns the client's tls.Config (TLS 1.2 at
// least).
func (f Files) Config() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName, InsecureSkipVerify: f.InsecureSkipVerify} //nolint:gosec // only when asked
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, &FieldError{"ca", err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &FieldError{"ca", fmt.Errorf("%s holds no PEM certificate", f.CA)}
		}
		c.RootCAs = pool
	}
	switch {
	case f.Cert == "" && f.Key == "":
	case f.Cert == "":
		return nil, &FieldError{"cert", errors.New("is required with key")}
	case f.Key == "":
		return nil, &FieldError{"key", errors.New("is required with cert")}
	default:
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, &FieldError{"cert", fmt.Errorf("%s with key %s: %w", f.Cert, f.Key, err)}
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}
