package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/tether-dev/tether/agent"
)

// portsFlag collects --port LISTEN=BASE.
type portsFlag []agent.RouterPort

func (p *portsFlag) String() string { return fmt.Sprint(*p) }

func (p *portsFlag) Set(s string) error {
	l, b, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("%q: want LISTEN=BASE, e.g. :8080=10.96.0.12:80", s)
	}
	if _, _, err := net.SplitHostPort(l); err != nil {
		return fmt.Errorf("%q: listen address: %w", s, err)
	}
	if _, _, err := net.SplitHostPort(b); err != nil {
		return fmt.Errorf("%q: base address: %w", s, err)
	}
	*p = append(*p, agent.RouterPort{Listen: l, Base: b})
	return nil
}

func runRouter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("router", "--port LISTEN=BASE... [--control :7070] [--ttl 15s]",
		"Lane router (docs/lanes.md): HTTP/1.1 requests carrying x-tether-lane (or the\n"+
			"baggage member tether-lane) go to the developer registered for that lane,\n"+
			"everything else to BASE. The control token is read from $"+agent.RouterTokenEnv+".", stdout, stderr)
	var ports portsFlag
	fs.Var(&ports, "port", "`LISTEN=BASE`: serve LISTEN, default upstream BASE (repeatable)")
	control := fs.String("control", ":7070", "control API `ADDR`")
	ttl := fs.Duration("ttl", 15*time.Second, "a route expires after `DURATION` without renewal")
	logLevel := logFlag(fs)
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	token := os.Getenv(agent.RouterTokenEnv)
	if len(ports) == 0 || token == "" {
		fmt.Fprintln(stderr, "tether-agent router: --port and $"+agent.RouterTokenEnv+" are required")
		fs.Usage()
		return errUsage
	}
	log, err := newLogger(*logLevel, stderr)
	if err != nil {
		return err
	}
	cln, err := net.Listen("tcp", *control)
	if err != nil {
		return err
	}
	r, err := agent.StartRouter(agent.RouterConfig{Ports: ports, Control: cln, Token: token, TTL: *ttl, Logger: log})
	if err != nil {
		cln.Close()
		return err
	}
	for i, a := range r.Addrs() {
		fmt.Fprintf(stderr, "tether-agent router: %s -> base %s\n", a, ports[i].Base)
	}
	fmt.Fprintf(stderr, "tether-agent router: control on %s\n", cln.Addr())
	<-ctx.Done()
	// Terminating (the Service was restored): let requests in flight end
	// within the pod's grace period.
	sctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	return r.Shutdown(sctx)
}
