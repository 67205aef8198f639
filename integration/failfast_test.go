package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/ronintest"
)

// failFastBound is how soon a misconfiguration must be reported.
const failFastBound = 2 * time.Second

// startPlainServer starts a standalone nats-server on 127.0.0.1 at a
// random port with opts (JetStream in a temp dir unless noJS), shut down
// when the test ends.
func startPlainServer(t *testing.T, noJS bool, edit func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, ServerName: "plain"}
	if !noJS {
		opts.JetStream, opts.StoreDir = true, t.TempDir()
	}
	if edit != nil {
		edit(opts)
	}
	srv, err := server.NewServer(opts)
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	require.True(t, srv.ReadyForConnections(5*time.Second), "server not ready")
	return srv
}

// startURLNode makes a URL-mode Manager and starts it with a 20 s ctx,
// returning Start's error and how long it took. The Manager is shut down
// when the test ends.
func startURLNode(t *testing.T, cfg ronin.ServerConfig) (*ronin.Manager, error, time.Duration) {
	t.Helper()
	cfg.Logger = ronintest.Logger()
	m, err := ronin.NewManager(cfg)
	require.NoError(t, err)
	t.Cleanup(m.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	err = m.Start(ctx)
	return m, err, time.Since(began)
}

// TestFailFastAuthorization: wrong credentials fail Start at once with an
// error that matches nats.ErrAuthorization.
func TestFailFastAuthorization(t *testing.T) {
	srv := startPlainServer(t, false, func(o *server.Options) { o.Username, o.Password = "ronin", "right" })
	_, err, took := startURLNode(t, ronin.ServerConfig{
		NodeID: "ff-auth", URL: srv.ClientURL(),
		NATSOptions: []nats.Option{nats.UserInfo("ronin", "wrong")},
	})
	t.Logf("Start failed after %v: %v", took.Round(time.Millisecond), err)
	require.ErrorIs(t, err, nats.ErrAuthorization)
	require.ErrorContains(t, err, "credentials")
	require.Less(t, took, failFastBound)

	_, err, took = startURLNode(t, ronin.ServerConfig{
		NodeID: "ff-auth-ok", URL: srv.ClientURL(),
		NATSOptions: []nats.Option{nats.UserInfo("ronin", "right")},
	})
	require.NoError(t, err, "right credentials (after %v)", took)
}

// TestFailFastTLSUnknownCA: a server certificate from a CA the client does
// not trust fails Start at once with the x509 error.
func TestFailFastTLSUnknownCA(t *testing.T) {
	caPEMPool, serverCert := testCertificates(t)
	srv := startPlainServer(t, false, func(o *server.Options) {
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}
		o.TLS, o.TLSTimeout = true, 2
	})
	url := "tls://" + srv.Addr().String()

	_, err, took := startURLNode(t, ronin.ServerConfig{
		NodeID: "ff-tls", URL: url,
		NATSOptions: []nats.Option{nats.Secure(&tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12})},
	})
	t.Logf("Start failed after %v: %v", took.Round(time.Millisecond), err)
	var unknown x509.UnknownAuthorityError
	require.ErrorAs(t, err, &unknown)
	var verify *tls.CertificateVerificationError
	require.ErrorAs(t, err, &verify)
	require.ErrorIs(t, err, nats.ErrTLS)
	require.Less(t, took, failFastBound)

	// The same server with its CA trusted: the failure was the CA.
	_, err, took = startURLNode(t, ronin.ServerConfig{
		NodeID: "ff-tls-ok", URL: url,
		NATSOptions: []nats.Option{nats.Secure(&tls.Config{RootCAs: caPEMPool, MinVersion: tls.VersionTLS12})},
	})
	require.NoError(t, err, "trusted CA (after %v)", took)
}

// TestFailFastNoJetStream: a standalone server without JetStream fails
// Start at once with an error that matches jetstream.ErrJetStreamNotEnabled.
func TestFailFastNoJetStream(t *testing.T) {
	srv := startPlainServer(t, true, nil)
	_, err, took := startURLNode(t, ronin.ServerConfig{NodeID: "ff-nojs", URL: srv.ClientURL()})
	t.Logf("Start failed after %v: %v", took.Round(time.Millisecond), err)
	require.ErrorIs(t, err, jetstream.ErrJetStreamNotEnabled)
	require.ErrorContains(t, err, "JetStream disabled")
	require.Less(t, took, failFastBound)
}

// TestFailFastReplicasAboveServers: Replicas 3 against one standalone
// server is refused at once by NewCandidate and RegisterShards, naming
// Replicas and matching ErrInvalidConfig.
func TestFailFastReplicasAboveServers(t *testing.T) {
	srv := startPlainServer(t, false, nil)
	m, err, _ := startURLNode(t, ronin.ServerConfig{NodeID: "ff-r3", URL: srv.ClientURL()})
	require.NoError(t, err)

	began := time.Now()
	cfg := candidateConfig("c1", "ff_r3", "k", 2*time.Second)
	cfg.Replicas = 3
	_, err = m.NewCandidate(cfg)
	took := time.Since(began)
	t.Logf("NewCandidate failed after %v: %v", took.Round(time.Millisecond), err)
	require.ErrorIs(t, err, ronin.ErrInvalidConfig)
	require.ErrorContains(t, err, "Replicas 3")
	var apiErr *jetstream.APIError
	require.ErrorAs(t, err, &apiErr, "the JetStream error stays wrapped")
	require.Less(t, took, failFastBound)

	began = time.Now()
	_, err = m.RegisterShards(ronin.ShardConfig{BucketName: "ff_r3_shards", Shards: 4, Replicas: 3,
		Handler: func(ctx context.Context, _ int, _ uint64) error { <-ctx.Done(); return nil }})
	took = time.Since(began)
	t.Logf("RegisterShards failed after %v: %v", took.Round(time.Millisecond), err)
	require.ErrorIs(t, err, ronin.ErrInvalidConfig)
	require.ErrorContains(t, err, "Replicas 3")
	require.Less(t, took, failFastBound)
}

// TestFailFastDuplicateNodeID: a node with the NodeID of a live cluster
// member is refused within the bound, embedded and in URL mode.
func TestFailFastDuplicateNodeID(t *testing.T) {
	c := ronintest.NewCluster(t, 3)
	// The URL-mode twin of n2 connects to n1's server, which learns of n2's
	// answering subscription through a route some milliseconds after n2
	// started: until then nobody answers there (a documented gap of the
	// check). Wait until n1's server routes the ping to n2.
	nc, err := nats.Connect(c.Manager(0).ClientURL())
	require.NoError(t, err)
	ronintest.Eventually(t, 5*time.Second, func() bool {
		_, err := nc.Request("_RONIN.node.n2.ping", nil, 100*time.Millisecond)
		return err == nil
	}, "n2's ping subscription never reached n1's server")
	nc.Close()
	ports, err := ronintest.FreePorts(2)
	require.NoError(t, err)
	cfg := c.Node(0).Config
	cfg.ClientPort, cfg.ClusterPort, cfg.DataDir = ports[0], ports[1], t.TempDir()
	for _, twin := range []ronin.ServerConfig{cfg, {NodeID: "n2", URL: c.Manager(0).ClientURL()}} {
		_, err, took := startURLNode(t, twin)
		t.Logf("twin of %s (URL mode %t): Start failed after %v: %v", twin.NodeID, twin.URL != "", took.Round(time.Millisecond), err)
		require.ErrorIs(t, err, ronin.ErrDuplicateNode)
		require.Less(t, took, failFastBound)
	}
}

// testCertificates makes a CA and a server certificate for 127.0.0.1
// signed by it; it returns a pool holding the CA and the server's key pair.
func testCertificates(t *testing.T) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return k
	}
	caKey, srvKey := newKey(), newKey()
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ronin test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &srvKey.PublicKey, caKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: srvKey}
}
