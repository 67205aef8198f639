//go:build unix

package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
)

// connFlags are the NATS connection flags every subcommand shares, named as
// in the nats CLI.
type connFlags struct {
	server   string // comma-separated URLs
	creds    string // credentials file (JWT and NKey seed)
	user     string
	password string
	token    string
	tlsCert  string // client certificate file
	tlsKey   string // client key file
	tlsCA    string // CA file to verify the servers with
	tlsFirst bool   // TLS handshake before the server's INFO
}

// register defines the connection flags on fs.
func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", "", "NATS server `URLs`, comma-separated (required)")
	fs.StringVar(&c.creds, "creds", "", "user credentials `file`")
	fs.StringVar(&c.user, "user", "", "user name")
	fs.StringVar(&c.password, "password", "", "password (with --user)")
	fs.StringVar(&c.token, "token", "", "authentication token")
	fs.StringVar(&c.tlsCert, "tlscert", "", "TLS client certificate `file` (with --tlskey)")
	fs.StringVar(&c.tlsKey, "tlskey", "", "TLS client key `file` (with --tlscert)")
	fs.StringVar(&c.tlsCA, "tlsca", "", "TLS CA `file` to verify the servers")
	fs.BoolVar(&c.tlsFirst, "tlsfirst", false, "perform the TLS handshake before the server's INFO")
}

// options checks the flags and returns the connection options they ask
// for. Errors name the flag and its value (never a secret). The server URLs
// themselves are checked by ronin.NewManager.
func (c *connFlags) options() ([]nats.Option, error) {
	if c.server == "" {
		return nil, errors.New(`--server "": required (e.g. nats://127.0.0.1:4222)`)
	}
	for _, f := range []struct{ flag, path string }{
		{"--creds", c.creds}, {"--tlscert", c.tlsCert}, {"--tlskey", c.tlsKey}, {"--tlsca", c.tlsCA},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("%s %q: %v", f.flag, f.path, err)
		}
	}
	var opts []nats.Option
	if c.creds != "" {
		opts = append(opts, nats.UserCredentials(c.creds))
	}
	switch {
	case c.user != "":
		opts = append(opts, nats.UserInfo(c.user, c.password))
	case c.password != "":
		return nil, errors.New(`--password: needs --user`)
	}
	if c.token != "" {
		opts = append(opts, nats.Token(c.token))
	}
	switch {
	case c.tlsCert != "" && c.tlsKey != "":
		opts = append(opts, nats.ClientCert(c.tlsCert, c.tlsKey))
	case c.tlsCert != "":
		return nil, fmt.Errorf(`--tlskey "": required with --tlscert %q`, c.tlsCert)
	case c.tlsKey != "":
		return nil, fmt.Errorf(`--tlscert "": required with --tlskey %q`, c.tlsKey)
	}
	if c.tlsCA != "" {
		opts = append(opts, nats.RootCAs(c.tlsCA))
	}
	if c.tlsFirst {
		opts = append(opts, nats.TLSHandshakeFirst())
	}
	return opts, nil
}
