package manager

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// watchConn is the last option of the URL-mode connection. It wraps the
// ReconnectErrCB and ClosedCB that the other options set, so that Start
// learns at once of a connection error that retrying cannot cure (see
// permanentConnErr): nats.go reports the failure of the first connection
// attempt, made with RetryOnFailedConnect, only to ReconnectErrCB, and
// closes the connection after the same authorization error twice.
func (st *startup) watchConn(o *nats.Options) error {
	reconnectErr, closed := o.ReconnectErrCB, o.ClosedCB
	o.ReconnectErrCB = func(nc *nats.Conn, err error) {
		if permanentConnErr(err) {
			st.setConnErr(err)
		}
		if reconnectErr != nil {
			reconnectErr(nc, err)
		}
	}
	o.ClosedCB = func(nc *nats.Conn) {
		if err := nc.LastError(); permanentConnErr(err) {
			st.setConnErr(err)
		}
		if closed != nil {
			closed(nc)
		}
	}
	return nil
}

// setConnErr records the first incurable connection error and ends Start's
// ctx with it. After Start has returned it changes nothing that is read.
func (st *startup) setConnErr(err error) {
	st.connMu.Lock()
	if st.connErr == nil {
		st.connErr = err
	}
	st.connMu.Unlock()
	if st.interrupt != nil {
		st.interrupt(err)
	}
}

// connFatal returns, in URL mode, an error wrapping the first connection
// error that retrying cannot cure: one recorded by watchConn, or the
// connection's last error if it is such an error or the connection was
// closed (nats.go gives up after the same authorization error twice).
func (st *startup) connFatal() error {
	if st.url == "" {
		return nil
	}
	st.connMu.Lock()
	err := st.connErr
	st.connMu.Unlock()
	if err == nil && st.nc != nil {
		if last := st.nc.LastError(); permanentConnErr(last) {
			err = last
		} else if st.nc.IsClosed() {
			if last == nil {
				last = nats.ErrConnectionClosed
			}
			err = fmt.Errorf("connection closed: %w", last)
		}
	}
	if err == nil {
		return nil
	}
	return fmt.Errorf("connecting to %s: %w%s", st.url, err, connHint(err))
}

// connHint says, for the kinds of permanentConnErr, what to check.
func connHint(err error) string {
	switch {
	case isAuthErr(err):
		return " (the server rejected the credentials: check the user, password, token, NKey or credentials file of URL or NATSOptions)"
	case errors.Is(err, nats.ErrTLS) || errors.Is(err, nats.ErrSecureConnWanted) || errors.Is(err, nats.ErrSecureConnRequired):
		return " (TLS failed: check the server's certificate and the CAs and client certificate given through NATSOptions, e.g. nats.RootCAs or nats.Secure)"
	}
	return ""
}

func isAuthErr(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}

// permanentConnErr reports whether a connection error will not go away by
// retrying: the server refused the credentials, the TLS set-ups of client
// and server do not match, or a certificate failed verification (on either
// side: a TLS alert from the server means it refused ours).
func permanentConnErr(err error) bool {
	if err == nil {
		return false
	}
	if isAuthErr(err) || errors.Is(err, nats.ErrSecureConnWanted) || errors.Is(err, nats.ErrSecureConnRequired) {
		return true
	}
	var (
		verify     *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalid    x509.CertificateInvalidError
		alert      tls.AlertError
		remoteTLSe *net.OpError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &hostname),
		errors.As(err, &invalid), errors.As(err, &alert):
		return true
	case errors.As(err, &remoteTLSe) && remoteTLSe.Op == "remote error" && errors.Is(err, nats.ErrTLS):
		return true
	}
	return false
}

// notEnabled returns, in URL mode, an error wrapping err when the
// AccountInfo probe's error err means that JetStream will not come: the
// server said JetStream is disabled for the connection's account
// (jetstream.ErrJetStreamNotEnabledForAccount), or nobody answered
// (jetstream.ErrJetStreamNotEnabled, which is what nats.go makes of "no
// responders" and of the server's code 10076) while the connected server
// has JetStream off and no cluster that could route the request to a
// server that has it on. A clustered server without JetStream is retried:
// its routes may yet carry the interest of servers that have it.
func (st *startup) notEnabled(err error) error {
	if st.srv != nil || st.nc == nil {
		return nil
	}
	if errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return fmt.Errorf("JetStream is not enabled for this connection's account on %s: %w", st.url, err)
	}
	if !errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return nil
	}
	on, _ := st.nc.ConnectedServerJetStream()
	if on || !st.nc.IsConnected() || st.nc.ConnectedClusterName() != "" {
		return nil
	}
	return fmt.Errorf("the NATS server %q at %s has JetStream disabled and no cluster (start it with -js, or jetstream {} in its configuration): %w",
		st.nc.ConnectedServerName(), st.nc.ConnectedUrlRedacted(), err)
}
