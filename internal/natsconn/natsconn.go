// Package natsconn turns the NATS credentials and TLS settings an
// operator gives (a credentials file, an NKey seed, a user and password,
// a token; a private CA and a client certificate) into nats.go's connect
// options, for campaignd and campaignctl alike, and tells a refusal that
// no retry can mend (wrong credentials, an untrusted certificate) from a
// server that is not there yet.
package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/campaignd/campaignd/internal/tlsconf"
)

// InboxPrefix is where the replies to campaignd's own requests come (its
// JetStream calls, the campaigns it pulls, audience chunks): a prefix of
// its own under _INBOX, so that the least-privilege account lets only
// campaignd read them (configs/nats/campaignd-account.conf) while a
// permission of _INBOX.> still covers it.
const InboxPrefix = "_INBOX.campaignd"

// Auth is how a client proves who it is to NATS, and how it checks the
// server. At most one of Creds, NKey, User (with Password) and Token.
type Auth struct {
	Creds    string // a credentials file (user JWT and NKey seed)
	NKey     string // an NKey seed file
	User     string
	Password string
	Token    string
	// TLS, when Enabled, verifies the server with TLS.Files (a private CA,
	// a client certificate); InsecureSkipVerify accepts any certificate.
	TLS TLS
}

// TLS is nats.tls.
type TLS struct {
	Enabled bool
	tlsconf.Files
}

// Check reports the first problem of the settings, naming its field
// (creds, nkey, user, password, token, tls.ca, tls.cert, tls.key).
func (a Auth) Check() (field string, err error) {
	n := 0
	for _, set := range []bool{a.Creds != "", a.NKey != "", a.User != "" || a.Password != "", a.Token != ""} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return "creds", errors.New("give one of creds, nkey, user and password, or token")
	case a.Password != "" && a.User == "":
		return "user", errors.New("is required with password")
	}
	for _, f := range []struct{ field, path string }{{"creds", a.Creds}, {"nkey", a.NKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return f.field, err
		}
	}
	if a.TLS.Enabled {
		if _, err := a.TLS.Config(); err != nil {
			var fe *tlsconf.FieldError
			if errors.As(err, &fe) {
				return "tls." + fe.Field, fe.Err
			}
			return "tls", err
		}
	}
	return "", nil
}

// Options are the connect options for the settings.
func (a Auth) Options() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case a.Creds != "":
		opts = append(opts, nats.UserCredentials(a.Creds))
	case a.NKey != "":
		o, err := nats.NkeyOptionFromSeed(a.NKey)
		if err != nil {
			return nil, fmt.Errorf("nkey %s: %w", a.NKey, err)
		}
		opts = append(opts, o)
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	}
	if a.TLS.Enabled {
		tc, err := a.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("tls.%w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// Who names the identity for a person (never a secret): the user, the
// credentials or seed file, or "a token".
func (a Auth) Who() string {
	switch {
	case a.Creds != "":
		return "credentials file " + a.Creds
	case a.NKey != "":
		return "nkey seed " + a.NKey
	case a.User != "":
		return "user " + a.User
	case a.Token != "":
		return "a token"
	}
	return "no credentials"
}

// Permanent explains an error no retry can mend: NATS refused the
// credentials, or the server's certificate cannot be trusted. It returns
// "" for anything else (a server not up yet, a network error).
func (a Auth) Permanent(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) ||
		strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		return "NATS refused " + a.Who() + ": " + err.Error()
	}
	return TLSReason(err)
}

// TLSReason explains a certificate the client cannot trust (unknown
// authority, another host's, expired), or returns "".
func TLSReason(err error) string {
	var (
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		cve *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &ua):
		return "TLS: the server's certificate is signed by an unknown authority (set the CA): " + err.Error()
	case errors.As(err, &he):
		return "TLS: the server's certificate is for another host name: " + err.Error()
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return "TLS: the server's certificate has expired or is not valid yet: " + err.Error()
	case errors.As(err, &ci), errors.As(err, &cve):
		return "TLS: the server's certificate is not valid: " + err.Error()
	}
	return ""
}
