package launch

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tether-dev/tether/calls"
	"github.com/tether-dev/tether/channel"
	"github.com/tether-dev/tether/internal/connset"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/workspace"
)

// Cloud → local: each exposed local port gets a listener on the proxy side
// (SSH remote forwarding). Connections accepted there are carried back
// through the tunnel to 127.0.0.1:localPort. The listeners are
// re-established, on the same remote port, after a reconnect.

// remoteListener is the part of a tunnel that listens on the far side.
type remoteListener interface {
	Listen(ctx context.Context, network, address string) (net.Listener, error)
}

// executor runs a command on the proxy machine (OpenSSH proxies).
type executor interface {
	Exec(ctx context.Context, cmd string) ([]byte, error)
}

type exposure struct {
	spec    workspace.Expose
	bind    string // host:port asked of the proxy machine (port fixed once bound)
	address string // host:port cloud callers use
	ln      net.Listener
}

type exposer struct {
	tun    tunnel.Tunnel
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	items  []*exposure
	conns  connset.Set
	onCall func(calls.Call) // nil: calls are not read
}

// advertiseAddress is the proxy machine's address as cloud callers reach
// it: ssh.advertiseAddress, else the proxy machine's own address inside the
// proxy's route CIDRs (from `hostname -I` on it), else its first
// non-loopback address.
func advertiseAddress(ctx context.Context, tun tunnel.Tunnel, px *workspace.Proxy) (string, error) {
	if px.SSH != nil && px.SSH.AdvertiseAddress != "" {
		return px.SSH.AdvertiseAddress, nil
	}
	if pod, ok := tun.(interface{ PodIP() string }); ok && pod.PodIP() != "" {
		// A kubernetes agent pod listens on its own IP (a replacement pod
		// after a reconnect has another one).
		return pod.PodIP(), nil
	}
	ex, ok := tun.(executor)
	if !ok {
		return "", errcat.Config.New("set ssh.advertiseAddress: this proxy cannot tell its own address")
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := ex.Exec(cctx, "hostname -I 2>/dev/null || hostname -i")
	if err != nil {
		return "", errcat.Config.Newf("could not discover the proxy machine's private address (%v): set ssh.advertiseAddress", err)
	}
	var cidrs []netip.Prefix
	if px.Routes != nil {
		for _, c := range px.Routes.CIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				cidrs = append(cidrs, p)
			}
		}
	}
	var first string
	for _, f := range strings.Fields(string(out)) {
		a, err := netip.ParseAddr(f)
		if err != nil || a.IsLoopback() || a.IsLinkLocalUnicast() {
			continue
		}
		for _, p := range cidrs {
			if p.Contains(a) {
				return a.String(), nil
			}
		}
		if first == "" && a.Is4() {
			first = a.String()
		}
	}
	if first == "" {
		return "", errcat.Config.Newf("the proxy machine reported no usable address (%q): set ssh.advertiseAddress", strings.TrimSpace(string(out)))
	}
	return first, nil
}

// startExpose listens on the proxy side for every spec, before the app
// starts, so that a taken port or a server that forbids remote forwarding
// fails the launch with a clear error.
func startExpose(ctx context.Context, tun tunnel.Tunnel, px *workspace.Proxy, specs []workspace.Expose, log *slog.Logger, onCall func(calls.Call)) (*exposer, error) {
	if _, ok := tun.(remoteListener); !ok {
		return nil, fmt.Errorf("expose: proxy %s cannot listen on the far side: %w", px.Name, ErrNotSupported)
	}
	adv, err := advertiseAddress(ctx, tun, px)
	if err != nil {
		return nil, errcat.Environment.Newf("expose through proxy %s: %w", px.Name, err)
	}
	ectx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e := &exposer{tun: tun, log: log, ctx: ectx, cancel: cancel, onCall: onCall}
	for _, s := range specs {
		it := &exposure{spec: s, bind: net.JoinHostPort(adv, strconv.Itoa(s.RemotePort))}
		if err := e.listen(ctx, it); err != nil {
			e.Close()
			return nil, err
		}
		e.items = append(e.items, it)
	}
	for _, it := range e.items {
		e.wg.Add(1)
		go e.serve(it)
	}
	return e, nil
}

func (e *exposer) listen(ctx context.Context, it *exposure) error {
	ln, err := e.tun.Listen(ctx, "tcp", it.bind)
	if err != nil {
		return errcat.Environment.Newf("expose local port %d: the proxy machine refused to listen on %s (%v): the port may be taken, or the SSH server forbids remote forwarding (AllowTcpForwarding, and GatewayPorts clientspecified for a non-loopback address)",
			it.spec.LocalPort, it.bind, err)
	}
	host, _, _ := net.SplitHostPort(it.bind)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if port == "" || port == "0" {
		_, port, _ = net.SplitHostPort(it.bind)
	}
	it.bind = net.JoinHostPort(host, port) // a reconnect asks for the same port
	it.address = it.bind
	e.mu.Lock()
	it.ln = ln
	e.mu.Unlock()
	e.log.Info("exposed", "local", it.spec.LocalPort, "address", it.address)
	return nil
}

// serve accepts on the proxy side; when the listener dies with its SSH
// connection, it listens again once the tunnel is back.
func (e *exposer) serve(it *exposure) {
	defer e.wg.Done()
	for {
		e.mu.Lock()
		ln := it.ln
		e.mu.Unlock()
		for ln != nil {
			c, err := ln.Accept()
			if err != nil {
				break
			}
			e.wg.Add(1)
			go e.carry(c, it.spec.LocalPort)
		}
		for backoff := 200 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
			select {
			case <-e.ctx.Done():
				return
			case <-time.After(backoff):
			}
			if e.tun.State() == tunnel.Closed {
				return
			}
			if err := e.listen(e.ctx, it); err == nil {
				break
			} else {
				e.log.Warn("expose: listening again failed", "address", it.bind, "err", err)
			}
		}
	}
}

func (e *exposer) carry(c net.Conn, localPort int) {
	defer e.wg.Done()
	if !e.conns.Add(c) {
		return
	}
	defer e.conns.Remove(c)
	d := net.Dialer{Timeout: 5 * time.Second}
	local, err := d.DialContext(e.ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(localPort)))
	if err != nil {
		e.log.Warn("expose: the local app does not accept connections", "port", localPort, "err", err)
		c.Close()
		return
	}
	var obs *calls.Conn
	if e.onCall != nil {
		obs = calls.NewConn(calls.Info{Target: local.RemoteAddr().String(), Inbound: true, Via: "expose"}, e.onCall)
	}
	channel.SpliceCalls(c, local, obs) // closing c (Close) ends it and closes local
}

// Exposed lists the exposed ports and where cloud callers reach them.
func (e *exposer) Exposed() []protocol.ExposedPort {
	if e == nil {
		return nil
	}
	out := make([]protocol.ExposedPort, len(e.items))
	for i, it := range e.items {
		out[i] = protocol.ExposedPort{LocalPort: it.spec.LocalPort, Address: it.address, Registry: it.spec.Registry}
	}
	return out
}

// Close removes the listeners on the proxy side and ends the carried
// connections.
func (e *exposer) Close() {
	if e == nil {
		return
	}
	e.cancel()
	e.mu.Lock()
	for _, it := range e.items {
		if it.ln != nil {
			it.ln.Close()
		}
	}
	e.mu.Unlock()
	e.conns.CloseAll()
	e.wg.Wait()
}

// registryArgs are the JVM system properties (java) and environment
// variables (any type) that make a framework register addr instead of the
// laptop's address. docs/expose.md says where each comes from.
func registryArgs(registry, addr string) (props, env map[string]string) {
	host, port, _ := net.SplitHostPort(addr)
	switch registry {
	case protocol.RegistryNacos:
		props = map[string]string{"spring.cloud.nacos.discovery.ip": host, "spring.cloud.nacos.discovery.port": port}
	case protocol.RegistryEureka:
		props = map[string]string{"eureka.instance.ip-address": host, "eureka.instance.prefer-ip-address": "true",
			"eureka.instance.hostname": host, "eureka.instance.non-secure-port": port}
	case protocol.RegistryConsul:
		props = map[string]string{"spring.cloud.consul.discovery.ip-address": host,
			"spring.cloud.consul.discovery.prefer-ip-address": "true", "spring.cloud.consul.discovery.port": port}
	case protocol.RegistryDubbo:
		// Dubbo reads these as system properties or environment variables.
		props = map[string]string{"DUBBO_IP_TO_REGISTRY": host, "DUBBO_PORT_TO_REGISTRY": port}
		return props, props
	default:
		return nil, nil
	}
	// Spring Boot's relaxed binding: the same keys as environment variables.
	env = map[string]string{}
	for k, v := range props {
		env[strings.ToUpper(strings.NewReplacer(".", "_", "-", "").Replace(k))] = v
	}
	return props, env
}
