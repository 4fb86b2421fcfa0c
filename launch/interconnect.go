package launch

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tether-dev/tether/calls"
	"github.com/tether-dev/tether/channel"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/internal/routes"
	"github.com/tether-dev/tether/javaagent"
	sshplugin "github.com/tether-dev/tether/plugins/ssh"
	"github.com/tether-dev/tether/progress"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/workspace"
)

// Hooks connect a session to whoever watches it: the IDE (JSON-RPC
// notifications and questions) or the terminal.
type Hooks struct {
	// Prompts answers unknown host keys and asks for secrets; nil refuses.
	Prompts sshplugin.Prompts
	// OnState is called on every tunnel state change.
	OnState func(protocol.TunnelStatus)
	// OnConn is called for every connection that went through the channel.
	OnConn func(protocol.ConnectionRecord)
	// OnCall is called for every HTTP call (and TLS connection) read on a
	// session's connections, from one goroutine of the Manager, in order.
	OnCall func(protocol.CallRecord)
	// OnOutput receives the app's output (launches only).
	OnOutput func(launchID, stream string, data []byte)
	// OnLaunchState receives launch state changes (launches only).
	OnLaunchState func(protocol.LaunchStateParams)
	// OnLaneFallback: requests of the session's lane were served by base.
	OnLaneFallback func(protocol.LaneFallbackParams)
	Logger         *slog.Logger

	// callSink receives the calls of a session (set by the Manager); nil
	// reads none.
	callSink func(calls.Call)
	lane     string // the session's lane: its HTTP requests carry the header
}

func (h *Hooks) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

// Interconnect is an open way into the cloud for one session: the tunnel to
// a proxy and the local channel service (SOCKS5 and HTTP proxy on loopback)
// that routes the app's connections through it.
type Interconnect struct {
	ID      string
	Proxy   string
	Tunnel  tunnel.Tunnel
	Channel *channel.Channel

	unwatch  func()
	expose   *exposer
	lane     *laneSession
	dial     func(ctx context.Context, network, address string) (net.Conn, error) // the app's dials (lane header)
	agent    *javaagent.Server                                                    // java configurations with the agent
	onConn   func(protocol.ConnectionRecord)
	onCall   func(calls.Call) // nil: calls are not read
	log      *slog.Logger     // with the proxy and session
	dir      string           // the workspace, for relative paths
	routes   routes.Routes    // what goes through the tunnel...
	routeAll bool             // ...or everything, for a proxy without routes
	agentSt  channel.Summary  // connections the agent redirected
	mu       sync.Mutex
	status   protocol.TunnelStatus
}

// Expose makes the local ports of specs reachable on the proxy side; it
// fails before the app starts if the proxy machine cannot listen there.
func (ic *Interconnect) Expose(ctx context.Context, px *workspace.Proxy, specs []workspace.Expose, log *slog.Logger) error {
	if len(specs) == 0 {
		return nil
	}
	progress.Report(ctx, "exposing %d local port(s) on proxy %s", len(specs), px.Name)
	e, err := startExpose(ctx, ic.Tunnel, px, specs, log.With("session", ic.ID), ic.onCall)
	if err != nil {
		return errcat.Environment.Wrap(err)
	}
	ic.expose = e
	return nil
}

// StartJavaAgent starts the control server of Tether's Java agent for this
// session: the JVM's connects to routed destinations and lookups of names
// under the route domains come here and go through the tunnel.
func (ic *Interconnect) StartJavaAgent(ctx context.Context) error {
	log := ic.log
	cidrs, domains := ic.routes.CIDRs, ic.routes.Domains
	if ic.routeAll { // no routes: everything goes through the tunnel
		cidrs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	a, err := javaagent.Start(context.WithoutCancel(ctx), javaagent.Config{
		Dial: ic.dial, CIDRs: cidrs, Domains: domains, Logger: log, OnCall: ic.onCall,
		OnConn: func(c javaagent.Conn) {
			if c.Target == "" {
				if c.Err != nil {
					log.Warn("java agent: " + c.Err.Error())
				}
				return
			}
			r := protocol.ConnectionRecord{SessionID: ic.ID, Target: c.Target, Route: "tunnel", Sent: c.Sent,
				Received: c.Received, DurationMs: c.Duration.Milliseconds()}
			if c.Err != nil {
				r.Error = c.Err.Error()
			}
			ic.countAgentConn(r)
			if ic.onConn != nil {
				ic.onConn(r)
			}
		},
	})
	if err != nil {
		return errcat.Environment.Wrap(err)
	}
	ic.agent = a
	return nil
}

func (ic *Interconnect) countAgentConn(r protocol.ConnectionRecord) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	ic.agentSt.Connections++
	ic.agentSt.Tunnel++
	ic.agentSt.Sent += r.Sent
	ic.agentSt.Received += r.Received
	if r.Error != "" {
		ic.agentSt.Failed++
		ic.agentSt.Failures = append(ic.agentSt.Failures, channel.Record{Target: r.Target, Route: r.Route, Err: r.Error})
	}
}

// Summary counts the session's connections: those through the channel and
// those the Java agent redirected.
func (ic *Interconnect) Summary() channel.Summary {
	s := ic.Channel.Summary()
	ic.mu.Lock()
	defer ic.mu.Unlock()
	s.Connections += ic.agentSt.Connections
	s.Tunnel += ic.agentSt.Tunnel
	s.Failed += ic.agentSt.Failed
	s.Sent += ic.agentSt.Sent
	s.Received += ic.agentSt.Received
	s.Failures = append(s.Failures, ic.agentSt.Failures...)
	return s
}

// Exposed lists the exposed local ports and where cloud callers reach them.
func (ic *Interconnect) Exposed() []protocol.ExposedPort {
	if ic == nil {
		return nil
	}
	return ic.expose.Exposed()
}

// OpenInterconnect opens the tunnel to px and starts the channel. Paths in
// px resolve against the workspace directory.
func OpenInterconnect(ctx context.Context, dir string, px *workspace.Proxy, id string, h Hooks) (*Interconnect, error) {
	log := h.logger().With("proxy", px.Name, "session", id)
	tun, err := OpenTunnel(ctx, dir, px, h)
	if err != nil {
		return nil, err
	}
	ic := &Interconnect{ID: id, Proxy: px.Name, Tunnel: tun, onConn: h.OnConn, onCall: h.callSink, log: log, dir: dir,
		status: protocol.TunnelStatus{SessionID: id, Proxy: px.Name, State: string(tun.State()), Since: now()}}
	ic.routeAll = true
	var up tunnel.Tunnel = tun
	if h.lane != "" {
		up = laneTunnel{Tunnel: tun, lane: h.lane}
	}
	ic.dial = up.Dial
	cidrs, domains := routesOf(ctx, dir, px, log)
	if len(cidrs) > 0 || len(domains) > 0 {
		r, err := routes.Parse(cidrs, domains)
		if err != nil {
			tun.Close()
			return nil, errcat.Config.Newf("proxy %s routes: %w", px.Name, err)
		}
		ic.routes, ic.routeAll = r, false
	}
	ch, err := channel.Start(context.WithoutCancel(ctx), channel.Config{
		Tunnel: up, Routes: ic.routes, RouteAll: ic.routeAll, Logger: log, TrustSameUser: true, OnCall: h.callSink,
		OnConn: func(r channel.Record) {
			if h.OnConn != nil {
				h.OnConn(protocol.ConnectionRecord{SessionID: id, Target: r.Target, Route: r.Route, Sent: r.Sent,
					Received: r.Received, DurationMs: r.Duration.Milliseconds(), Error: r.Err})
			}
		},
	})
	if err != nil {
		tun.Close()
		return nil, errcat.Environment.Wrap(err)
	}
	ic.Channel = ch
	ic.unwatch = tun.Watch(func(e tunnel.Event) {
		st := protocol.TunnelStatus{SessionID: id, Proxy: px.Name, State: string(e.State), Since: e.Time.UTC().Format(time.RFC3339)}
		if e.Err != nil {
			st.Error = e.Err.Error()
		}
		ic.mu.Lock()
		ic.status = st
		ic.mu.Unlock()
		log.Info("tunnel "+string(e.State), "error", st.Error)
		if h.OnState != nil {
			h.OnState(st)
		}
	})
	log.Info("interconnect open", "socks5", ch.SOCKSAddr(), "http", ch.HTTPAddr())
	return ic, nil
}

// Status is the tunnel's current state.
func (ic *Interconnect) Status() protocol.TunnelStatus {
	ic.mu.Lock()
	st := ic.status
	ic.mu.Unlock()
	st.Lane = ic.lane.Status()
	return st
}

// Close closes the channel and the tunnel.
func (ic *Interconnect) Close() error {
	ic.lane.Stop() // first: tagged requests go to base before anything closes
	if ic.unwatch != nil {
		ic.unwatch()
	}
	ic.expose.Close()
	if ic.agent != nil {
		ic.agent.Close()
	}
	err := ic.Channel.Close()
	if terr := ic.Tunnel.Close(); err == nil {
		err = terr
	}
	return err
}

// JVMArgs route a JVM's blocking sockets (java.net.Socket, HttpURLConnection,
// JDBC drivers) through the channel's SOCKS5 port. A name that does not
// resolve locally is sent to the proxy unresolved, so private DNS names
// resolve on the far side.
//
// No credentials: the JDK's SOCKS client ignores java.net.socks.username
// and .password (it only asks an application Authenticator, else sends
// user.name with no password), so the channel lets sockets of the same OS
// user in without them (channel.Config.TrustSameUser) and putting a
// password on the command line would only show it in ps.
func (ic *Interconnect) JVMArgs() []string {
	host, port, _ := net.SplitHostPort(ic.Channel.SOCKSAddr())
	return []string{
		"-DsocksProxyHost=" + host,
		"-DsocksProxyPort=" + port,
		"-DsocksProxyVersion=5",
		// Loopback never goes through the proxy (the IDE debugger, local services).
		"-DsocksNonProxyHosts=localhost|127.*|[::1]",
	}
}

// ProxyEnv is the environment that routes curl, Go, Python, Node... through
// the channel: ALL_PROXY (SOCKS5 with remote name resolution) and the HTTP
// proxy variables, in both cases.
func (ic *Interconnect) ProxyEnv() map[string]string {
	cred := ic.Channel.Username() + ":" + ic.Channel.Password()
	socks := "socks5h://" + cred + "@" + ic.Channel.SOCKSAddr()
	http := "http://" + cred + "@" + ic.Channel.HTTPAddr()
	noProxy := "localhost,127.0.0.1,::1"
	env := map[string]string{}
	for k, v := range map[string]string{"ALL_PROXY": socks, "HTTP_PROXY": http, "HTTPS_PROXY": http, "NO_PROXY": noProxy} {
		env[k] = v
		env[strings.ToLower(k)] = v
	}
	return env
}

// resolvePath resolves ~ against home and relative paths against dir.
func resolvePath(dir, p string) string {
	switch {
	case p == "":
		return ""
	case p == "~" || strings.HasPrefix(p, "~/"):
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, strings.TrimPrefix(p, "~"))
		}
		return p
	case filepath.IsAbs(p):
		return p
	}
	return filepath.Join(dir, p)
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }
