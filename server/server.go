// Package server owns the JSON-RPC connections of IDE clients: LSP framing,
// the initialize/shutdown/exit lifecycle, cancellation, progress, and
// forwarding backend logs to the client. The work itself is in handlers.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.lsp.dev/jsonrpc2"
	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/framing"
	"github.com/tether-dev/tether/protocol"
)

// Options configure a Server.
type Options struct {
	// Workspace, when set, overrides the workspace that clients send.
	Workspace string
	// Version is reported in serverInfo.
	Version string
	// Logger receives the backend's own log (stderr for tether serve).
	Logger *slog.Logger
	// LogLevel is the lowest level forwarded to clients as window/logMessage.
	LogLevel slog.Level
	// Token, when set, must be sent by clients in initializationOptions.
	Token string
	// MaxMessageBytes bounds one incoming message once initialize succeeded
	// (default 64 MiB); before, the bound is DefaultMaxUninitializedBytes.
	MaxMessageBytes int
	// MaxConnections bounds the clients Serve serves at once (default
	// DefaultMaxConnections); a connection over it gets an error reply
	// and is closed.
	MaxConnections int
	// InitializeTimeout is how long Serve waits for a client's initialize
	// to succeed before it closes the connection (default
	// DefaultInitializeTimeout). ServeConn (stdio) has no such deadline.
	InitializeTimeout time.Duration
	// OnParentExit is called when a watched IDE process is gone.
	OnParentExit func()
}

// Limits of Serve (socket clients); documented in docs/protocol.md.
const (
	DefaultMaxConnections    = 64
	DefaultInitializeTimeout = 10 * time.Second
)

// Server serves IDE clients, each connection its own session.
type Server struct {
	opts   Options
	nextID atomic.Int64
}

// New returns a server.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	if opts.InitializeTimeout <= 0 {
		opts.InitializeTimeout = DefaultInitializeTimeout
	}
	return &Server{opts: opts}
}

// ServeConn runs one client session on rwc until the client exits or goes
// away. It returns the exit code an LSP server uses: 0 if the client sent
// shutdown before exit (or before closing), 1 otherwise.
func (srv *Server) ServeConn(ctx context.Context, rwc io.ReadWriteCloser) int {
	return srv.serveConn(ctx, rwc, 0)
}

func (srv *Server) serveConn(ctx context.Context, rwc io.ReadWriteCloser, initTimeout time.Duration) int {
	work, cancel := context.WithCancel(ctx)
	s := &session{srv: srv, id: srv.nextID.Add(1), work: work, cancel: cancel, exited: make(chan int, 1),
		inflight: map[jsonrpc2.ID]context.CancelFunc{}}
	return s.serve(ctx, rwc, initTimeout)
}

// Serve accepts clients on ln until ctx is done (or ln is closed); each is
// its own session. A failing accept (e.g. out of file descriptors: EMFILE,
// ENFILE) is retried with a backoff, never the end of the server; at most
// MaxConnections clients are served at once, and each must complete
// initialize within InitializeTimeout.
func (srv *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, srv.opts.MaxConnections)
	var backoff time.Duration
	var lastRefusal time.Time
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			srv.opts.Logger.Warn("accept failed", "err", err, "retry", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		select {
		case slots <- struct{}{}:
		default:
			if time.Since(lastRefusal) > 10*time.Second {
				srv.opts.Logger.Warn("refusing a client: too many connections", "max", srv.opts.MaxConnections)
				lastRefusal = time.Now()
			}
			refuse(c, fmt.Sprintf("too many connections: tether serve serves at most %d clients at once", srv.opts.MaxConnections))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			srv.serveConn(ctx, c, srv.opts.InitializeTimeout)
		}()
	}
}

// refuse answers a connection that is not served with an error reply (no
// id) and closes it.
func refuse(c net.Conn, msg string) {
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": nil,
		"error": map[string]any{"code": protocol.CodeServerBusy, "message": msg}})
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_ = framing.NewWriter(c).WriteFrame(body)
	_ = c.Close()
}

// Listen opens the listener for --listen: "unix:PATH" (socket mode 0600) or
// "tcp:127.0.0.1:PORT" (loopback only; clients must present a token).
func Listen(spec string) (net.Listener, error) {
	network, addr, ok := strings.Cut(spec, ":")
	if !ok || addr == "" {
		return nil, fmt.Errorf("--listen %q: use unix:PATH or tcp:127.0.0.1:PORT", spec)
	}
	switch network {
	case "unix":
		if st, err := os.Lstat(addr); err == nil && st.Mode()&os.ModeSocket != 0 {
			// A socket left by a backend that crashed: remove it if nobody answers.
			if c, err := net.DialTimeout("unix", addr, 200*time.Millisecond); err == nil {
				c.Close()
				return nil, fmt.Errorf("--listen %q: another tether serve is listening there", spec)
			}
			_ = os.Remove(addr)
		}
		if err := os.MkdirAll(filepath.Dir(addr), 0o700); err != nil {
			return nil, err
		}
		old := unix.Umask(0o177) // the socket is created 0600, never briefly wider
		ln, err := net.Listen("unix", addr)
		unix.Umask(old)
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(addr, 0o600); err != nil {
			ln.Close()
			return nil, err
		}
		return ln, nil
	case "tcp":
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("--listen %q: %v", spec, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("--listen %q: only loopback addresses are allowed (e.g. tcp:127.0.0.1:0)", spec)
		}
		return net.Listen("tcp", addr)
	}
	return nil, fmt.Errorf("--listen %q: unknown network %q, use unix:PATH or tcp:127.0.0.1:PORT", spec, network)
}

// NewToken returns a random client token.
func NewToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// WriteTokenFile writes the token readable only by the user.
func WriteTokenFile(path, token string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	_ = os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WatchParent calls OnParentExit once the process pid (--ppid) is gone.
// The processId of initialize ends only its own session (session.watchIDE).
func (srv *Server) WatchParent(pid int) {
	if srv.opts.OnParentExit == nil || pid <= 0 {
		return
	}
	go func() {
		for {
			if !processAlive(pid) {
				srv.opts.Logger.Warn("IDE process is gone; exiting", "pid", pid)
				srv.opts.OnParentExit()
				return
			}
			time.Sleep(time.Second)
		}
	}()
}

func processAlive(pid int) bool {
	return !errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}
