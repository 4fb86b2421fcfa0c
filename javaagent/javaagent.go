// Package javaagent serves the Tether Java agent (javaagent/java, built by
// scripts/javaagent.sh into dist/ and embedded here): the control server the
// agent talks to, one-shot loopback forwards through the tunnel, fake
// addresses for private names, and the JVM arguments and environment that
// load the agent.
//
// Control protocol (one TCP connection per JVM, 127.0.0.1, UTF-8 lines):
//
//	agent:   HELLO <token> <java.version> <pid>
//	backend: OK, FAKE <cidr>, CIDR <cidr>..., DOMAIN <suffix>..., END   (or ERR <message>, close)
//	agent:   CONNECT <id> <ip> <port> [<name>][\t<frame>]   backend: PORT <id> <port> | ERR <id> <message>
//	agent:   RESOLVE <id> <name>                 backend: ADDR <id> <ip>   | ERR <id> <message>
//	agent:   LOG <message>                       (no answer: goes to the connection log)
//
// For CONNECT the backend first dials the destination through the tunnel
// (a fake address becomes "name:port", resolved on the cloud side), so that
// a refusal becomes the app's connect failure; then it listens on a fresh
// 127.0.0.1 port that accepts exactly one connection from the same OS user
// within ten seconds, and splices the two. <frame> is the first stack frame
// of the connect outside the JDK ("com.acme.OrderClient.place(OrderClient.java:42)"):
// the calls read on that connection say they were opened there.
package javaagent

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tether-dev/tether/calls"
	"github.com/tether-dev/tether/channel"
	"github.com/tether-dev/tether/internal/connset"
	"github.com/tether-dev/tether/internal/peercred"
	"github.com/tether-dev/tether/internal/routes"
)

//go:embed all:dist
var dist embed.FS

// jarName is the agent jar inside dist/.
const jarName = "tether-javaagent.jar"

// Timeouts of the control protocol.
var (
	helloTimeout   = 5 * time.Second
	dialTimeout    = 25 * time.Second
	oneShotTimeout = 10 * time.Second
)

// Available reports whether the agent jar is embedded in this binary (it is
// when scripts/javaagent.sh ran before go build).
func Available() bool {
	_, err := fs.Stat(dist, "dist/"+jarName)
	return err == nil
}

// Jar returns the embedded agent jar.
func Jar() ([]byte, error) {
	b, err := dist.ReadFile("dist/" + jarName)
	if err != nil {
		return nil, fmt.Errorf("the Java agent is not built into this binary (run scripts/javaagent.sh before go build): %w", err)
	}
	return b, nil
}

// Config configures Start.
type Config struct {
	// Dial opens a stream through the tunnel; addr is "ip:port" or
	// "name:port" (resolved on the far side).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// CIDRs and Domains are the routes: what the agent redirects.
	CIDRs   []netip.Prefix
	Domains []string
	// FakeRange holds fake addresses for names under Domains; default
	// routes.DefaultFakeCIDR. It must not overlap CIDRs.
	FakeRange netip.Prefix
	// JarDir is where the jar is extracted; default
	// $XDG_CACHE_HOME/tether (os.UserCacheDir), else the temp dir.
	JarDir string
	Logger *slog.Logger
	// OnConn is the connection log: one call per redirected connect, when
	// it ends (Err nil) or fails. It also receives agent notices (e.g. a
	// Netty native transport) with Target "" and Err set.
	OnConn func(Conn)
	// OnCall, if set, receives the HTTP calls read on the redirected
	// connections (package calls), each with the frame that opened it.
	OnCall func(calls.Call)
}

// Conn is the connection log entry of one redirected connect.
type Conn struct {
	Target   string // "ip:port", or "name:port" when the app used a private name
	Name     string // the private name, if any
	Sent     int64  // bytes app -> target
	Received int64  // bytes target -> app
	Duration time.Duration
	Frame    string // the calling frame that opened it, if the agent sent one
	Err      error
}

// Server is a running control server for one session.
type Server struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	token  string
	jar    string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	routes routes.Routes // what the agent redirects (cfg.CIDRs and Domains)
	pool   *routes.Pool  // fake addresses for names under routes.Domains

	mu     sync.Mutex
	conns  connset.Set
	closed bool
}

// Start starts the control server on 127.0.0.1:0 and extracts the jar (if
// embedded) to a versioned cache file.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dial == nil {
		return nil, errors.New("javaagent: Config.Dial is required")
	}
	if !cfg.FakeRange.IsValid() {
		cfg.FakeRange = routes.DefaultFakeRange()
	}
	pool, err := routes.NewPool(cfg.FakeRange, routes.FailWhenFull)
	if err != nil {
		return nil, fmt.Errorf("javaagent: %w", err)
	}
	r, err := routes.Parse(nil, cfg.Domains)
	if err != nil {
		return nil, fmt.Errorf("javaagent: %w", err)
	}
	r.CIDRs = cfg.CIDRs
	if err := r.CheckFakeRange(pool.Prefix()); err != nil {
		return nil, fmt.Errorf("javaagent: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var tok [24]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, token: hex.EncodeToString(tok[:]), routes: r, pool: pool}
	if Available() {
		p, err := extractJar(cfg.JarDir)
		if err != nil {
			return nil, err
		}
		s.jar = p
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// extractJar writes the embedded jar to dir/javaagent-<sha256 prefix>.jar
// unless it is already there, and returns the path.
func extractJar(dir string) (string, error) {
	b, err := Jar()
	if err != nil {
		return "", err
	}
	if dir == "" {
		if c, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(c, "tether")
		} else {
			dir = filepath.Join(os.TempDir(), "tether-"+strconv.Itoa(os.Getuid()))
		}
	}
	sum := sha256.Sum256(b)
	p := filepath.Join(dir, "javaagent-"+hex.EncodeToString(sum[:8])+".jar")
	if old, err := os.ReadFile(p); err == nil && sha256.Sum256(old) == sum {
		return p, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("javaagent: %w", err)
	}
	f, err := os.CreateTemp(dir, ".javaagent-*.tmp")
	if err != nil {
		return "", fmt.Errorf("javaagent: %w", err)
	}
	_, werr := f.Write(b)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(f.Name(), 0o644)
	}
	if werr == nil {
		werr = os.Rename(f.Name(), p) // atomic: concurrent sessions agree
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("javaagent: extract jar: %w", werr)
	}
	return p, nil
}

// JarPath is the extracted jar ("" if the jar is not embedded).
func (s *Server) JarPath() string { return s.jar }

// Addr is the control server's address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// JVMArgs returns the arguments that load the agent: -javaagent:<jar>. It
// is empty when the jar is not embedded (fall back to the SOCKS args).
func (s *Server) JVMArgs() []string {
	if s.jar == "" {
		return nil
	}
	return []string{"-javaagent:" + s.jar}
}

// Env returns the environment the JVM needs: the control address and the
// session token (environment, not arguments, so the token is not in ps).
func (s *Server) Env() map[string]string {
	return map[string]string{"TETHER_AGENT_CONTROL": s.Addr(), "TETHER_AGENT_TOKEN": s.token}
}

// Close stops the server, its control connections and pending one-shot
// ports and the connections spliced through it.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.conns.CloseAll()
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !s.conns.Add(c) {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.conns.Remove(c)
			defer c.Close()
			s.serve(c)
		}()
	}
}

// agentConn is one JVM's control connection.
type agentConn struct {
	s   *Server
	c   net.Conn
	wmu sync.Mutex
	w   *bufio.Writer
	pid string
}

func (a *agentConn) send(line string) {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	a.w.WriteString(line)
	a.w.WriteByte('\n')
	a.w.Flush()
}

func (s *Server) serve(c net.Conn) {
	r := bufio.NewReaderSize(c, 4096)
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	line, err := readLine(r)
	if err != nil {
		return
	}
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "HELLO" || subtle.ConstantTimeCompare([]byte(f[1]), []byte(s.token)) != 1 {
		s.log.Warn("java agent: control connection with a wrong token refused", "remote", c.RemoteAddr())
		c.Write([]byte("ERR bad token\n"))
		return
	}
	c.SetReadDeadline(time.Time{})
	a := &agentConn{s: s, c: c, w: bufio.NewWriter(c)}
	if len(f) >= 4 {
		a.pid = f[3]
	}
	var hello strings.Builder
	hello.WriteString("OK\n")
	if len(s.routes.Domains) > 0 {
		hello.WriteString("FAKE " + s.pool.Prefix().String() + "\n")
	}
	for _, p := range s.routes.CIDRs {
		hello.WriteString("CIDR " + p.Masked().String() + "\n")
	}
	for _, d := range s.routes.Domains {
		hello.WriteString("DOMAIN " + d + "\n")
	}
	hello.WriteString("END")
	a.send(hello.String())
	java := ""
	if len(f) >= 3 {
		java = f[2]
	}
	s.log.Info("java agent connected", "java", java, "pid", a.pid)
	for {
		line, err := readLine(r)
		if err != nil {
			return
		}
		verb, rest, _ := strings.Cut(line, " ")
		switch verb {
		case "CONNECT", "RESOLVE":
			id, args, _ := strings.Cut(rest, " ")
			if _, err := strconv.ParseUint(id, 10, 63); err != nil {
				continue
			}
			if verb == "RESOLVE" {
				// Answered inline: allocation is a map lookup.
				ip, err := s.resolve(args)
				if err != nil {
					a.send("ERR " + id + " " + oneLine(err.Error()))
				} else {
					a.send("ADDR " + id + " " + ip.String())
				}
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				port, err := s.connect(args)
				if err != nil {
					a.send("ERR " + id + " " + oneLine(err.Error()))
					return
				}
				a.send("PORT " + id + " " + strconv.Itoa(port))
			}()
		case "LOG":
			s.log.Warn("java agent: " + rest)
			if s.cfg.OnConn != nil {
				s.cfg.OnConn(Conn{Err: errors.New(rest)})
			}
		}
	}
}

func oneLine(s string) string { return strings.NewReplacer("\n", " ", "\r", " ").Replace(s) }

// readLine reads one line of at most 4 KiB.
func readLine(r *bufio.Reader) (string, error) {
	b, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", errors.New("line too long")
		}
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// resolve returns the fake address of a route-domain name, allocating one.
func (s *Server) resolve(name string) (netip.Addr, error) {
	name = routes.NormName(name)
	if name == "" || len(name) > 253 || strings.ContainsAny(name, " /:%") || !s.routes.MatchName(name) {
		return netip.Addr{}, fmt.Errorf("%q is not under the route domains", name)
	}
	a, err := s.pool.Addr(name)
	if err != nil {
		return netip.Addr{}, err
	}
	s.log.Debug("java agent: fake address", "name", name, "addr", a)
	return a, nil
}

// NameOf returns the name a fake address stands for.
func (s *Server) NameOf(a netip.Addr) (string, bool) { return s.pool.Name(a) }

// connect handles "ip port [name][\tframe]": dial through the tunnel, then
// open a one-shot loopback port that splices to it.
func (s *Server) connect(args string) (int, error) {
	args, frame, _ := strings.Cut(args, "\t")
	frame = strings.TrimSpace(frame)
	if len(frame) > 512 {
		frame = frame[:512]
	}
	f := strings.Fields(args)
	if len(f) < 2 {
		return 0, errors.New("tether: bad CONNECT request")
	}
	ip, err := netip.ParseAddr(f[0])
	if err != nil {
		return 0, fmt.Errorf("tether: bad address %q", f[0])
	}
	ip = ip.Unmap().WithZone("")
	port, err := strconv.Atoi(f[1])
	if err != nil || port <= 0 || port > 65535 {
		return 0, fmt.Errorf("tether: bad port %q", f[1])
	}
	name := ""
	if len(f) >= 3 {
		name = routes.NormName(f[2])
	}
	target := netip.AddrPortFrom(ip, uint16(port)).String()
	switch {
	case len(s.routes.Domains) > 0 && s.pool.Contains(ip):
		n, ok := s.NameOf(ip)
		if !ok {
			err := fmt.Errorf("tether: %s is not a fake address handed out in this session", ip)
			s.onConn(Conn{Target: target, Name: name, Err: err})
			return 0, err
		}
		name = n
		target = net.JoinHostPort(n, strconv.Itoa(port))
	case !s.routedIP(ip):
		err := fmt.Errorf("tether: %s is not in the proxy's routes", ip)
		s.onConn(Conn{Target: target, Name: name, Err: err})
		return 0, err
	}
	ctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
	up, err := s.cfg.Dial(ctx, "tcp", target)
	cancel()
	if err != nil {
		s.onConn(Conn{Target: target, Name: name, Err: err})
		return 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		up.Close()
		s.onConn(Conn{Target: target, Name: name, Err: err})
		return 0, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.oneShot(ln, up, target, name, frame)
	}()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// routedIP reports whether the agent's connect to ip goes through the
// tunnel: it is in the routes and not local to the app's machine.
func (s *Server) routedIP(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() {
		return false
	}
	return s.routes.MatchAddr(ip)
}

func (s *Server) onConn(c Conn) {
	if c.Err != nil {
		s.log.Info("java agent connection failed", "target", c.Target, "name", c.Name, "error", c.Err)
	} else {
		s.log.Debug("java agent connection", "target", c.Target, "name", c.Name)
	}
	if s.cfg.OnConn != nil {
		s.cfg.OnConn(c)
	}
}

// oneShot accepts the first connection from the same OS user within
// oneShotTimeout, closes the listener and splices.
func (s *Server) oneShot(ln net.Listener, up net.Conn, target, name, frame string) {
	tl := ln.(*net.TCPListener)
	deadline := time.Now().Add(oneShotTimeout)
	stop := context.AfterFunc(s.ctx, func() { ln.Close() })
	defer stop()
	for {
		tl.SetDeadline(deadline)
		c, err := ln.Accept()
		if err != nil {
			ln.Close()
			up.Close()
			s.onConn(Conn{Target: target, Name: name, Err: fmt.Errorf("tether: the app did not connect to its forward within %s", oneShotTimeout)})
			return
		}
		if !peercred.SameUser(c) {
			s.log.Warn("java agent: connection from another user refused", "remote", c.RemoteAddr())
			c.Close()
			continue
		}
		ln.Close()
		if !s.conns.Add(c) {
			up.Close()
			return
		}
		start := time.Now()
		var obs *calls.Conn
		if s.cfg.OnCall != nil {
			obs = calls.NewConn(calls.Info{Target: target, Opener: frame, Via: "javaagent"}, s.cfg.OnCall)
		}
		sent, received := channel.SpliceCalls(c, up, obs)
		s.conns.Remove(c)
		s.onConn(Conn{Target: target, Name: name, Sent: sent, Received: received, Duration: time.Since(start), Frame: frame})
		return
	}
}
