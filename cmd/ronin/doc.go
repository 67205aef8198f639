//go:build unix

/*
Ronin runs a command on one machine at a time: each `ronin run` campaigns
for a key in a NATS JetStream key-value bucket through the Ronin library,
and runs the command only while it leads the key. Like `consul lock`, but
over NATS. `ronin status` shows who leads what.

Usage:

	ronin <command> [flags]
	ronin run --server URL --bucket BUCKET --key KEY [flags] -- COMMAND [ARG...]
	ronin status --server URL [--bucket B[,B...]] [--json]

Flags may be written -flag or --flag, and -flag=value
or -flag value. The command line ends at "--"; what follows is COMMAND with its
arguments, run directly (not through a shell: use sh -c '...' for that).

# ronin status

Prints every Ronin bucket (or those named by --bucket) as the store shows it
now: members with the age of their last renew, each key's leader and fencing
token, each shard's owner (NO OWNER marks an ownerless shard), and whether
the bucket lacks its genesis record. It reads from any NATS connection,
against an embedded node's client port or an external cluster, with the
same connection flags as run; it creates no session and writes nothing.
--json prints the same picture as the status page's ?format=json
(ronin.StatusHandler). Exit code 1 if the server or a named bucket cannot
be read within --timeout (default 10s).

# ronin run

Start `ronin run` with the same --server, --bucket and --key on several
machines (or several times on one). Each connects to NATS (retrying until it
answers), then campaigns for the key:

  - Elected: COMMAND starts, with stdin, stdout and stderr passed through and
    RONIN_TOKEN, RONIN_BUCKET, RONIN_KEY and RONIN_ID added to its
    environment, in a process group of its own.
  - Leadership lost (renewals failed until the lease's deadline passed, or
    the key was taken over): COMMAND's process group gets SIGTERM, and
    SIGKILL after --grace. Once COMMAND is gone, ronin campaigns again; a new
    term starts COMMAND again with a new, greater RONIN_TOKEN.
  - COMMAND exits by itself: ronin resigns at once (the key is released, so
    another instance takes over in milliseconds, not after a TTL) and exits
    with COMMAND's exit code.
  - SIGINT, SIGTERM or SIGHUP to ronin: COMMAND's process group gets SIGTERM,
    and SIGKILL after --grace; once COMMAND is gone ronin resigns, closes its
    connection and exits 0. COMMAND is always gone before the key is released.
    Further signals meanwhile are ignored; the stop takes at most --grace.

When COMMAND exits, whatever is left in its process group is SIGKILLed.

Flags of run:

	--server URLS    NATS server URLs, comma-separated: nats://, tls://, ws://,
	                 wss:// (required). JetStream must be enabled.
	--creds FILE     user credentials file (JWT and NKey seed)
	--user NAME      user name; --password PASSWORD its password
	--token TOKEN    authentication token
	--tlscert FILE   TLS client certificate; needs --tlskey FILE
	--tlsca FILE     CA certificates to verify the servers with
	--tlsfirst       TLS handshake before the server's INFO (servers with
	                 handshake_first)
	--bucket NAME    election bucket: letters, digits, '_', '-' (required)
	--key NAME       key to lead: letters, digits, '-/_=.' (required)
	--id ID          this node and candidate: letters, digits, '-', '_', '.';
	                 unique among the live users of the NATS deployment.
	                 Default HOSTNAME-PID (other characters replaced by '-').
	--ttl DURATION   lease TTL (default 5s, at least 500ms): a leader that dies
	                 is replaced this long after its last renewal. All users of
	                 a bucket must agree on it.
	--grace DURATION time COMMAND gets between SIGTERM and SIGKILL (default
	                 TTL/4; 0 means SIGKILL at once). See Safety.
	--replicas N     replicas of the bucket's stream (default 1, or 3 on a NATS
	                 cluster). All users of a bucket must agree on it.

The connection's user needs JetStream and key-value access to the bucket and
publish and subscribe permission on "_RONIN.>".

Environment passed to COMMAND, besides ronin's own:

	RONIN_TOKEN   the fencing token of this term, in decimal: greater than
	              every token issued before for the key
	RONIN_BUCKET  --bucket
	RONIN_KEY     --key
	RONIN_ID      --id

Exit status:

	0     COMMAND exited 0, or ronin was stopped by SIGINT, SIGTERM or SIGHUP
	      (also while still connecting)
	N     COMMAND exited by itself with status N; 128+S if signal S killed it
	1     ronin failed: the bucket could not be used (settings differing from
	      other users', permissions, a NodeID in use), the bucket was deleted
	      while in use, or COMMAND could not be started
	2     bad command line: the message names the flag and its value (also
	      for --replicas above the number of servers, found once connected)

A COMMAND that exits 1 or 2 cannot be told from ronin's own failure by the
status alone; ronin's log on stderr says which.

# Safety

Ronin's lease is valid on the leader until RenewDeadline (TTL×2/3) after it
sent its last acknowledged renewal; other instances take over no earlier than
TTL after they saw that renewal. ronin sends SIGTERM the moment its lease
turns invalid by its own clock (it also checks every min(TTL/20, 100ms)), so
COMMAND must be gone within TTL minus the renew deadline (TTL/3) for two
COMMANDs never to run at once: --grace must be shorter than TTL/3, with room
to spare for scheduling and process exit. The default, TTL/4, leaves TTL/12.
A COMMAND that ignores SIGTERM is SIGKILLed after --grace. A longer --grace is
accepted with a warning: COMMAND may then still run when another instance
takes over.

Stopping in time needs a running ronin. On Linux COMMAND is SIGKILLed by the
kernel when ronin dies, even by SIGKILL (Pdeathsig); that reaches COMMAND
only, not processes it started (use exec in wrapper scripts), and on other
systems nothing kills COMMAND when ronin is SIGKILLed. A ronin that is
stopped (SIGSTOP, a debugger) or starved of CPU cannot stop COMMAND either.
So COMMAND should pass RONIN_TOKEN downstream as a fencing token with every
write, and downstream systems should refuse a token smaller than the largest
they have seen: that protects them whatever happens to ronin.

COMMAND runs in its own process group, in the background of a terminal:
Ctrl-C reaches ronin, which stops COMMAND with SIGTERM, and a COMMAND that
reads the terminal is stopped by SIGTTIN. Processes that leave the group
(setsid, daemonizing) escape ronin's signals; do not run such commands.

A new bucket grants no leadership for one TTL, so the first election on a
fresh bucket takes about a TTL.
*/
package main
