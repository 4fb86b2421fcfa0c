package agent

import (
	"bufio"
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
	"github.com/tether-dev/tether/internal/routes"
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
	upstream string // ip:port
	dialer   *net.Dialer

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
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
	s := &sidecar{cfg: cfg, log: log, pool: pool, conns: make(map[net.Conn]struct{})}
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
	s.upstream = net.JoinHostPort(ip.Unmap().String(), port)

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
	log.Info("sidecar starting", "upstream", s.upstream, "domains", routed.Domains, "nameservers", fwd, "fake", pool.Prefix().String())

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
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *sidecar) track(c net.Conn) {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *sidecar) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
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
	s.track(c)
	defer s.untrack(c)
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
	up, pre, err := s.dialSOCKS(ctx, target)
	if err != nil {
		s.log.Info("sidecar: connect failed", "target", target, "err", err)
		refuse(c)
		return
	}
	s.track(up)
	defer s.untrack(up)
	s.log.Debug("sidecar: connected", "target", target)
	sidecarSplice(c, up, pre)
}

// socksError is a SOCKS5 failure reply.
type socksError byte

func (e socksError) Error() string {
	msgs := map[socksError]string{1: "general failure", 2: "not allowed", 3: "network unreachable",
		4: "host unreachable", 5: "connection refused", 6: "TTL expired", 7: "command not supported", 8: "address type not supported"}
	if m, ok := msgs[e]; ok {
		return "socks5: " + m
	}
	return fmt.Sprintf("socks5: reply %d", byte(e))
}

// dialSOCKS connects to target ("host:port", host a name or an IP) through
// the upstream SOCKS5 server. The returned bytes were read after the reply
// and belong to the stream.
func (s *sidecar) dialSOCKS(ctx context.Context, target string) (net.Conn, []byte, error) {
	conn, err := s.dialer.DialContext(ctx, "tcp", s.upstream)
	if err != nil {
		return nil, nil, err
	}
	conn.SetDeadline(time.Now().Add(sidecarHandshakeTimeout))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	pre, err := socksConnect(conn, s.cfg.User, s.cfg.Password, target)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, pre, nil
}

// socksConnect runs a SOCKS5 handshake with username/password authentication
// and a CONNECT to target on conn.
func socksConnect(conn net.Conn, user, pass, target string) ([]byte, error) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port in %q", target)
	}
	req := []byte{5, 1, 0}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.Is4() {
			req = append(req, 1)
		} else {
			req = append(req, 4)
		}
		req = append(req, ip.AsSlice()...)
	} else {
		if len(host) > 255 {
			return nil, errors.New("socks5: host name too long")
		}
		req = append(req, 3, byte(len(host)))
		req = append(req, host...)
	}
	req = append(req, byte(port>>8), byte(port))

	br := bufio.NewReader(conn)
	if _, err := conn.Write([]byte{5, 1, 2}); err != nil {
		return nil, err
	}
	var b [4]byte
	if _, err := io.ReadFull(br, b[:2]); err != nil {
		return nil, err
	}
	if b[0] != 5 || b[1] != 2 {
		return nil, errors.New("socks5: the server refused username/password authentication")
	}
	auth := append([]byte{1, byte(len(user))}, user...)
	auth = append(auth, byte(len(pass)))
	auth = append(auth, pass...)
	if _, err := conn.Write(auth); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(br, b[:2]); err != nil {
		return nil, err
	}
	if b[1] != 0 {
		return nil, errors.New("socks5: authentication failed")
	}
	if _, err := conn.Write(req); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(br, b[:4]); err != nil {
		return nil, err
	}
	if b[0] != 5 {
		return nil, errors.New("socks5: bad reply")
	}
	if b[1] != 0 {
		return nil, socksError(b[1])
	}
	var skip int
	switch b[3] {
	case 1:
		skip = 4 + 2
	case 4:
		skip = 16 + 2
	case 3:
		l, err := br.ReadByte()
		if err != nil {
			return nil, err
		}
		skip = int(l) + 2
	default:
		return nil, errors.New("socks5: bad address type in reply")
	}
	if _, err := br.Discard(skip); err != nil {
		return nil, err
	}
	var pre []byte
	if n := br.Buffered(); n > 0 {
		pre, _ = br.Peek(n)
		pre = append([]byte(nil), pre...)
	}
	return pre, nil
}

// sidecarSplice copies between the app's connection and the upstream until
// both directions end, propagating half-closes, then closes both.
func sidecarSplice(app, up net.Conn, pre []byte) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := io.Copy(up, app)
		sidecarEnd(up, app, err)
	}()
	var err error
	if len(pre) > 0 {
		_, err = app.Write(pre)
	}
	if err == nil {
		_, err = io.Copy(app, up)
	}
	sidecarEnd(app, up, err)
	<-done
	app.Close()
	up.Close()
}

// sidecarEnd half-closes dst after a clean EOF from src; on error it closes
// both, which stops the other direction too.
func sidecarEnd(dst, src net.Conn, err error) {
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
	src.Close()
}
