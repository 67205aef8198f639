package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// The suite's network: one namespace per node, each with a veth whose
// other end sits on a bridge inside a hub namespace. The root namespace
// gets no link, address or route; every name starts with nsPrefix so that
// leftovers of a crashed run can be found and removed (and nothing else).
const (
	nsPrefix   = "ronin-chaos-"
	hubNS      = nsPrefix + "hub"
	bridgeName = "rcbr0"
	nodeLink   = "rc0"        // the node's end of its veth, inside its namespace
	subnet     = "10.213.77." // /24, used only inside the suite's namespaces
	firstHost  = 11           // node i (from 0) has subnet + (firstHost+i)
	ipTimeout  = 10 * time.Second
)

// netNode is one node's place in the network.
type netNode struct {
	ID, NS, IP, HubLink string
}

// network is the suite's namespaces and links.
type network struct {
	nodes []netNode
}

func newNetwork(ids []string) *network {
	n := &network{}
	for i, id := range ids {
		n.nodes = append(n.nodes, netNode{
			ID:      id,
			NS:      nsPrefix + id,
			IP:      fmt.Sprintf("%s%d", subnet, firstHost+i),
			HubLink: "rcv-" + id,
		})
	}
	return n
}

// ip runs the ip command (or tc with tool "tc") and returns its error
// with its output.
func runTool(tool string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func ip(args ...string) error { return runTool("ip", args...) }

func toolOutput(tool string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, args...).Output()
	return string(out), err
}

// setup creates the hub namespace with its bridge, then each node's
// namespace with its veth, address and loopback.
func (n *network) setup() error {
	steps := [][]string{
		{"netns", "add", hubNS},
		{"-n", hubNS, "link", "add", bridgeName, "type", "bridge"},
		{"-n", hubNS, "link", "set", bridgeName, "up"},
		{"-n", hubNS, "link", "set", "lo", "up"},
	}
	for _, nd := range n.nodes {
		steps = append(steps,
			[]string{"netns", "add", nd.NS},
			// Both ends are created inside the suite's namespaces.
			[]string{"-n", hubNS, "link", "add", nd.HubLink, "type", "veth", "peer", "name", nodeLink, "netns", nd.NS},
			[]string{"-n", hubNS, "link", "set", nd.HubLink, "master", bridgeName},
			[]string{"-n", hubNS, "link", "set", nd.HubLink, "up"},
			[]string{"-n", nd.NS, "addr", "add", nd.IP + "/24", "dev", nodeLink},
			[]string{"-n", nd.NS, "link", "set", nodeLink, "up"},
			[]string{"-n", nd.NS, "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// suiteNamespaces lists existing namespaces with the suite's prefix.
func suiteNamespaces() ([]string, error) {
	out, err := toolOutput("ip", "netns", "list")
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var names []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], nsPrefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// removeSuiteNamespaces SIGKILLs every process still inside one of the
// suite's namespaces (a node of a crashed run) and deletes the
// namespaces, which removes their links and the bridge with them.
func removeSuiteNamespaces() error {
	names, err := suiteNamespaces()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		if out, err := toolOutput("ip", "netns", "pids", name); err == nil {
			for f := range strings.FieldsSeq(out) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	if len(names) > 0 {
		time.Sleep(200 * time.Millisecond) // let the killed processes go
	}
	for _, name := range names {
		if err := ip("netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// byID returns the node's network place.
func (n *network) byID(id string) netNode {
	for _, nd := range n.nodes {
		if nd.ID == id {
			return nd
		}
	}
	panic("unknown node " + id)
}

// cut drops all traffic between the two sides with blackhole routes in
// every namespace of both sides, in both directions.
func (n *network) cut(a, b []string) error {
	return n.routes("add", a, b)
}

// heal removes the routes that cut(a, b) added.
func (n *network) heal(a, b []string) error {
	return n.routes("del", a, b)
}

func (n *network) routes(op string, a, b []string) error {
	var errs []error
	one := func(from, to string) {
		if err := ip("-n", n.byID(from).NS, "route", op, "blackhole", n.byID(to).IP+"/32"); err != nil {
			errs = append(errs, err)
		}
	}
	for _, x := range a {
		for _, y := range b {
			one(x, y)
			one(y, x)
		}
	}
	return errors.Join(errs...)
}

// netemSupported reports whether tc netem works in this kernel, by adding
// and removing a netem qdisc on a node's link.
func (n *network) netemSupported() (bool, string) {
	if _, err := exec.LookPath("tc"); err != nil {
		return false, "tc not installed"
	}
	nd := n.nodes[0]
	if err := runTool("ip", "netns", "exec", nd.NS, "tc", "qdisc", "add", "dev", nodeLink, "root", "netem", "delay", "1ms"); err != nil {
		return false, "tc netem unavailable in this kernel (" + lastLine(err.Error()) + ")"
	}
	_ = runTool("ip", "netns", "exec", nd.NS, "tc", "qdisc", "del", "dev", nodeLink, "root")
	return true, ""
}

// netem adds delay and loss on the node's link (egress of its namespace).
func (n *network) netem(id string, delay, jitter time.Duration, lossPct float64) error {
	return runTool("ip", "netns", "exec", n.byID(id).NS, "tc", "qdisc", "add", "dev", nodeLink, "root", "netem",
		"delay", fmt.Sprintf("%dms", delay.Milliseconds()), fmt.Sprintf("%dms", jitter.Milliseconds()),
		"loss", fmt.Sprintf("%.1f%%", lossPct))
}

// clearNetem removes the node's netem qdisc.
func (n *network) clearNetem(id string) error {
	return runTool("ip", "netns", "exec", n.byID(id).NS, "tc", "qdisc", "del", "dev", nodeLink, "root")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
