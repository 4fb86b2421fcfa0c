package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tether-dev/tether/agent"
	"github.com/tether-dev/tether/internal/agentproto"
)

// Environment variables of the sidecar's upstream credentials (never flags:
// flags show in the process list and in `docker inspect`'s Args).
const (
	envSOCKSUser     = agentproto.EnvSOCKSUser
	envSOCKSPassword = agentproto.EnvSOCKSPassword
)

const sidecarArgs = "--upstream HOST:PORT [--domains a.internal,b.local] [--tcp-port 15001] [--dns-port 53] [--fake-cidr " + agentproto.DefaultFakeCIDR + "]"

func runSidecar(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("sidecar", sidecarArgs,
		"Docker-mode sidecar: start it first in a container with NET_ADMIN, then run the\n"+
			"app with --network container:<sidecar>. It redirects every outbound TCP\n"+
			"connection of the network namespace (except loopback) and all DNS to itself\n"+
			"with nftables (table inet "+agent.SidecarTable+", removed on exit) and carries the\n"+
			"connections to the upstream SOCKS5 server. Names under --domains resolve to\n"+
			"fake addresses and are connected by name on the far side; other names go to\n"+
			"the nameservers of /etc/resolv.conf. Credentials come from the environment:\n"+
			"  "+envSOCKSUser+", "+envSOCKSPassword+"\n"+
			"Prints \""+agentproto.ReadyLine()+"\" on stdout once the redirection is up.", stdout, stderr)
	upstream := fs.String("upstream", "", "the backend's SOCKS5 server `HOST:PORT`")
	domains := fs.String("domains", "", "comma-separated DNS `SUFFIXES` resolved on the far side")
	tcpPort := fs.Int("tcp-port", 15001, "`PORT` of the transparent TCP proxy (on loopback)")
	dnsPort := fs.Int("dns-port", 53, "`PORT` of the DNS resolver (on loopback)")
	fakeCIDR := fs.String("fake-cidr", agentproto.DefaultFakeCIDR, "IPv4 `PREFIX` of the fake addresses of names under --domains")
	logLevel := logFlag(fs)
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	log, err := newLogger(*logLevel, stderr)
	if err != nil {
		return err
	}
	if *upstream == "" {
		fmt.Fprintf(stderr, "--upstream is required\n")
		fs.Usage()
		return errUsage
	}
	user, pass := os.Getenv(envSOCKSUser), os.Getenv(envSOCKSPassword)
	if user == "" || pass == "" {
		return errors.New(envSOCKSUser + " and " + envSOCKSPassword + " must be set")
	}
	var ds []string
	for _, d := range strings.Split(*domains, ",") {
		if d = strings.TrimSpace(d); d != "" {
			ds = append(ds, d)
		}
	}
	return agent.RunSidecar(ctx, agent.SidecarConfig{
		Upstream: *upstream,
		User:     user,
		Password: pass,
		Domains:  ds,
		TCPPort:  *tcpPort,
		DNSPort:  *dnsPort,
		FakeCIDR: *fakeCIDR,
		Logger:   log,
		Ready:    func() { fmt.Fprintln(stdout, agentproto.ReadyLine()) },
	})
}
