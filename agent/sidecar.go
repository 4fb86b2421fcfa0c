package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/tether-dev/tether/internal/agentproto"
	"github.com/tether-dev/tether/internal/connset"
	"github.com/tether-dev/tether/internal/relay"
	"github.com/tether-dev/tether/internal/routes"
	"github.com/tether-dev/tether/internal/socks5"
)

// SidecarMark is the default firewall mark of the sidecar's own sockets
// (upstream SOCKS connections, forwarded DNS queries): the redirection rules
// let marked traffic through.
const SidecarMark = 0x7e7e

// SidecarReady starts the line the sidecar prints on stdout once its rules
// and listeners are up (agentproto.ReadyLine: the agent's version follows).
const SidecarReady = agentproto.ReadyPrefix

// SidecarTable is the name of the sidecar's nftables table (family inet).
const SidecarTable = "tether"

const (
	sidecarHandshakeTimeout = 30 * time.Second
	sidecarDefaultResolv    = "/etc/resolv.conf"
)

// SidecarConfig configures RunSidecar.
type SidecarConfig struct {
	// Upstream is the backend's SOCKS5 server, host:port. A host name is
	// resolved once, before the redirection is installed.
	Upstream string
	// User and Password authenticate to Upstream (RFC 1929).
	User, Password string
	// Domains are DNS suffixes whose names are resolved on the far side:
	// the sidecar answers them with fake addresses and connects by name.
	Domains []string
	// TCPPort and DNSPort are the ports of the transparent proxy and the
	// resolver, on 127.0.0.1 and ::1.
	TCPPort, DNSPort int
	// FakeCIDR is the IPv4 prefix fake addresses come from.
	FakeCIDR string
	// Mark is the SO_MARK of the sidecar's own sockets; 0 means SidecarMark.
	Mark uint32
	// ResolvConf is read for the original nameservers; "" means
	// /etc/resolv.conf.
	ResolvConf string
	// Logger receives diagnostics; nil discards.
	Logger *slog.Logger
	// Ready is called once the rules and the listeners are up.
	Ready func()
}

// sidecar is a running sidecar.
type sidecar struct {
	cfg      SidecarConfig
	log      *slog.Logger
	pool     *routes.Pool
	upstream *socks5.Dialer
	dialer   *net.Dialer

	wg    sync.WaitGroup
	conns connset.Set
}

// RunSidecar runs the Docker-mode sidecar in the current network namespace
// until ctx is done: it installs nftables rules that redirect all outbound TCP
// (except loopback and its own traffic) to a transparent proxy that carries
// each connection to Upstream with SOCKS5 CONNECT, and DNS (UDP and TCP port
// 53) to a resolver that answers names under Domains with fake addresses and
// forwards the rest to the original nameservers. The rules are removed when
// it returns. It needs CAP_NET_ADMIN.
func RunSidecar(ctx context.Context, cfg SidecarConfig) error {
	if cfg.Mark == 0 {
		cfg.Mark = SidecarMark
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = sidecarDefaultResolv
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.User == "" || cfg.Password == "" {
		return errors.New("sidecar: upstream credentials missing")
	}
	if len(cfg.User) > 255 || len(cfg.Password) > 255 {
		return errors.New("sidecar: upstream credentials longer than 255 bytes")
	}
	for _, p := range []int{cfg.TCPPort, cfg.DNSPort} {
		if p <= 0 || p > 65535 {
			return fmt.Errorf("sidecar: port %d out of range", p)
		}
	}
	if cfg.TCPPort == cfg.DNSPort {
		return errors.New("sidecar: the TCP and DNS ports must differ")
	}
	routed, err := routes.Parse(nil, cfg.Domains)
	if err != nil {
		return fmt.Errorf("sidecar: %v", err)
	}
	fake, err := netip.ParsePrefix(cfg.FakeCIDR)
	if err != nil {
		return fmt.Errorf("sidecar: fake CIDR %q: %v", cfg.FakeCIDR, err)
	}
	pool, err := routes.NewPool(fake, routes.RecycleOldest)
	if err != nil {
		return fmt.Errorf("sidecar: %v", err)
	}
	s := &sidecar{cfg: cfg, log: log, pool: pool}
	s.dialer = &net.Dialer{Timeout: sidecarHandshakeTimeout, Control: markControl(cfg.Mark)}

	// Resolve the upstream before DNS is redirected to ourselves.
	host, port, err := net.SplitHostPort(cfg.Upstream)
	if err != nil {
		return fmt.Errorf("sidecar: upstream %q: %v", cfg.Upstream, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ips, lerr := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
		cancel()
		if lerr != nil || len(ips) == 0 {
			return fmt.Errorf("sidecar: upstream %q: %v", host, lerr)
		}
		ip = ips[0]
		for _, a := range ips {
			if a.Is4() || a.Is4In6() {
				ip = a
				break
			}
		}
	}
	s.upstream = &socks5.Dialer{Proxy: net.JoinHostPort(ip.Unmap().String(), port), User: cfg.User, Password: cfg.Password,
		Dial: s.dialer.DialContext, HandshakeTimeout: sidecarHandshakeTimeout}

	servers, err := readResolvConf(cfg.ResolvConf)
	if err != nil {
		log.Warn("sidecar: no original nameservers: names outside the domains will fail", "err", err)
	}
	var fwd []string
	for _, ns := range servers {
		ap := netip.MustParseAddrPort(ns)
		if ap.Addr().IsLoopback() && int(ap.Port()) == cfg.DNSPort && (ap.Addr() == netip.MustParseAddr("127.0.0.1") || ap.Addr() == netip.IPv6Loopback()) {
			log.Warn("sidecar: nameserver is the sidecar's own address; ignored", "nameserver", ns)
			continue
		}
		fwd = append(fwd, ns)
	}
	log.Info("sidecar starting", "upstream", s.upstream.Proxy, "domains", routed.Domains, "nameservers", fwd, "fake", pool.Prefix().String())

	dns := &dnsHandler{routes: routed, pool: pool, log: log}
	dns.forward = (&dnsForwarder{servers: fwd, dial: s.dialer.DialContext}).forward

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()

	// Listeners: IPv4 loopback is required, IPv6 loopback when the namespace
	// has it.
	for _, lo := range []string{"127.0.0.1", "::1"} {
		tcpLn, err := net.Listen("tcp", net.JoinHostPort(lo, strconv.Itoa(cfg.TCPPort)))
		if err != nil {
			if lo == "::1" {
				log.Debug("sidecar: no IPv6 listener", "err", err)
				break
			}
			return fmt.Errorf("sidecar: %v", err)
		}
		closers = append(closers, tcpLn)
		dnsUDP, err := net.ListenPacket("udp", net.JoinHostPort(lo, strconv.Itoa(cfg.DNSPort)))
		if err != nil {
			return fmt.Errorf("sidecar: %v", err)
		}
		closers = append(closers, dnsUDP)
		dnsTCP, err := net.Listen("tcp", net.JoinHostPort(lo, strconv.Itoa(cfg.DNSPort)))
		if err != nil {
			return fmt.Errorf("sidecar: %v", err)
		}
		closers = append(closers, dnsTCP)
		s.wg.Add(3)
		go func() { defer s.wg.Done(); s.serveTCP(ctx, tcpLn) }()
		go func() { defer s.wg.Done(); dns.serveUDP(ctx, dnsUDP) }()
		go func() { defer s.wg.Done(); dns.serveTCP(ctx, dnsTCP) }()
	}

	rules := sidecarRules{TCPPort: uint16(cfg.TCPPort), DNSPort: uint16(cfg.DNSPort), Mark: cfg.Mark}
	if err := installSidecarRules(rules); err != nil {
		return fmt.Errorf("sidecar: installing the redirection (the sidecar needs NET_ADMIN): %w", err)
	}
	defer func() {
		if err := removeSidecarRules(); err != nil {
			log.Warn("sidecar: removing the redirection", "err", err)
		}
	}()
	if cfg.Ready != nil {
		cfg.Ready()
	}
	log.Info("sidecar ready")
	<-ctx.Done()
	log.Info("sidecar stopping")
	for _, c := range closers {
		c.Close()
	}
	closers = nil
	s.conns.CloseAll()
	s.wg.Wait()
	return nil
}

func (s *sidecar) serveTCP(ctx context.Context, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, c.(*net.TCPConn))
		}()
	}
}

// refuse closes c with a reset, which the app sees as a failed connection.
func refuse(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// serveConn carries one intercepted connection to the upstream.
func (s *sidecar) serveConn(ctx context.Context, c *net.TCPConn) {
	if !s.conns.Add(c) {
		return // stopping
	}
	defer s.conns.Remove(c)
	dst, err := originalDst(c)
	if err != nil {
		s.log.Debug("sidecar: no original destination", "client", c.RemoteAddr().String(), "err", err)
		refuse(c)
		return
	}
	if dst.Addr().IsLoopback() {
		// Not redirected (a direct connect to our port): never loop.
		refuse(c)
		return
	}
	target := dst.String()
	if s.pool.Contains(dst.Addr()) {
		name, ok := s.pool.Name(dst.Addr())
		if !ok {
			s.log.Info("sidecar: connect to an unknown fake address", "addr", dst.String())
			refuse(c)
			return
		}
		target = net.JoinHostPort(name, strconv.Itoa(int(dst.Port())))
	}
	up, err := s.upstream.DialContext(ctx, "tcp", target)
	if err != nil {
		s.log.Info("sidecar: connect failed", "target", target, "err", err)
		refuse(c)
		return
	}
	if !s.conns.Add(up) {
		c.Close()
		return // stopping
	}
	defer s.conns.Remove(up)
	s.log.Debug("sidecar: connected", "target", target)
	relay.Conns(c, up)
}
