package launch

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/tether-dev/tether/internal/errcat"
	sshplugin "github.com/tether-dev/tether/plugins/ssh"
	"github.com/tether-dev/tether/progress"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/workspace"
)

// Transport is how bytes reach the cloud through a proxy: one
// implementation per proxy kind (transport_ssh.go, transport_kubernetes.go).
// A transport registers itself in an init func; transportOf picks the one a
// proxy's settings name. Everything above it (the interconnect, forwards,
// the DAP bridge) uses only the tunnel it opens.
type Transport interface {
	// Kind is the proxy kind, the name of its section in tether.yaml.
	Kind() string
	// Configured reports whether px has this transport's section.
	Configured(px *workspace.Proxy) bool
	// Open opens a tunnel to px. Paths in px resolve against dir; report
	// turns the transport's steps into progress while it opens.
	Open(ctx context.Context, dir string, px *workspace.Proxy, h Hooks, report func(string)) (tunnel.Tunnel, error)
	// Test checks px step by step for proxy/test (target "": the
	// transport's default) and names the step that fails.
	Test(ctx context.Context, dir string, px *workspace.Proxy, prompts sshplugin.Prompts, target string) protocol.ProxyTestResult
	// DefaultRoutes is what goes through the tunnel when px names no
	// routes; none means everything.
	DefaultRoutes(ctx context.Context, dir string, px *workspace.Proxy, log *slog.Logger) (cidrs, domains []string)
	// Clean removes what crashed backends of this user left on the far side
	// of px (all: also of running ones) and says what it removed.
	Clean(ctx context.Context, dir string, px *workspace.Proxy, all bool) ([]string, error)
}

// transports holds the registered transports, by kind.
var transports = registry[Transport]{what: "transport"}

// registerTransport adds a transport; called from init funcs.
func registerTransport(t Transport) { transports.add(t.Kind(), t) }

// Transports lists the proxy kinds this build connects through, sorted.
func Transports() []string { return transports.names() }

// registry holds the implementations of one axis (runtimes, transports)
// by name; they register from init funcs.
type registry[T any] struct {
	what string
	m    map[string]T
}

func (r *registry[T]) add(name string, v T) {
	if _, dup := r.m[name]; dup {
		panic("launch: " + r.what + " registered twice: " + name)
	}
	if r.m == nil {
		r.m = map[string]T{}
	}
	r.m[name] = v
}

// names lists the registered names, sorted.
func (r *registry[T]) names() []string {
	names := make([]string, 0, len(r.m))
	for n := range r.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// transportOf returns the transport of px: the one whose section it has.
func transportOf(px *workspace.Proxy) (Transport, error) {
	for _, k := range Transports() {
		if t := transports.m[k]; t.Configured(px) {
			return t, nil
		}
	}
	return nil, errcat.Config.Newf("proxy %s has no %s section", px.Name, strings.Join(Transports(), " or "))
}

// OpenTunnel opens the tunnel to px (no channel): for JDWP forwards and
// the DAP bridge. Paths in px resolve against the workspace directory.
func OpenTunnel(ctx context.Context, dir string, px *workspace.Proxy, h Hooks) (tunnel.Tunnel, error) {
	t, err := transportOf(px)
	if err != nil {
		return nil, err
	}
	log := h.logger().With("proxy", px.Name)
	var opening atomic.Bool // progress only while opening; the log always
	opening.Store(true)
	report := func(msg string) {
		if opening.Load() {
			progress.Report(ctx, "%s", msg)
		}
		log.Info(msg)
	}
	tun, err := t.Open(ctx, dir, px, h, report)
	opening.Store(false)
	if err != nil {
		return nil, errcat.Environment.Wrap(fmt.Errorf("proxy %s: %w", px.Name, err))
	}
	return tun, nil
}

// TestProxy checks a proxy step by step and names the step that fails (see
// each transport's Test).
func TestProxy(ctx context.Context, dir string, px *workspace.Proxy, prompts sshplugin.Prompts, target string) protocol.ProxyTestResult {
	t, err := transportOf(px)
	if err != nil {
		return protocol.ProxyTestResult{Steps: []protocol.TestStep{{Name: "tcp", Message: err.Error()}}}
	}
	return t.Test(ctx, dir, px, prompts, target)
}

// routesOf returns the proxy's routes: its own, else its transport's
// defaults (a kubernetes proxy: the cluster's CIDRs and DNS suffixes).
func routesOf(ctx context.Context, dir string, px *workspace.Proxy, log *slog.Logger) (cidrs, domains []string) {
	if px.Routes != nil && (len(px.Routes.CIDRs) > 0 || len(px.Routes.Domains) > 0) {
		return px.Routes.CIDRs, px.Routes.Domains
	}
	t, err := transportOf(px)
	if err != nil {
		return nil, nil
	}
	return t.DefaultRoutes(ctx, dir, px, log)
}

// CleanPods removes what crashed sessions of this user left on the far
// side of the workspace's proxies (all of this user's with all): agent
// pods and idle lane routers in the clusters of its kubernetes proxies.
func CleanPods(ctx context.Context, ws *workspace.Workspace, all bool) ([]string, error) {
	s, err := ws.Load()
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, px := range s.File.Proxies {
		t, err := transportOf(&px)
		if err != nil {
			continue
		}
		r, err := t.Clean(ctx, ws.Dir, &px, all)
		removed = append(removed, r...)
		if err != nil {
			return removed, errcat.Environment.Wrap(err)
		}
	}
	return removed, nil
}
