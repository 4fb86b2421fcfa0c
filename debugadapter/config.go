package debugadapter

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/launch"
	sshplugin "github.com/tether-dev/tether/plugins/ssh"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/workspace"
)

// Config configures one DAP session.
type Config struct {
	// Workspace holds the proxies (tether.yaml); relative substitutePath
	// "from" directories resolve against its directory.
	Workspace *workspace.Workspace
	// OpenTunnel opens a tunnel to the named proxy; the session closes it.
	// Default: the workspace's proxy through launch.OpenTunnel.
	OpenTunnel func(ctx context.Context, proxy string) (tunnel.Tunnel, error)
	// Prompts answers host key and secret questions of the default
	// OpenTunnel; nil refuses.
	Prompts sshplugin.Prompts
	Logger  *slog.Logger

	DialTimeout       time.Duration // dialling the target through the tunnel
	HandshakeTimeout  time.Duration // the target's answer to initialize
	DisconnectTimeout time.Duration // the target's answer to disconnect
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.DisconnectTimeout <= 0 {
		c.DisconnectTimeout = DefaultDisconnectTimeout
	}
	if c.OpenTunnel == nil {
		c.OpenTunnel = c.workspaceTunnel
	}
	return c
}

// workspaceTunnel opens the tunnel to a proxy of the workspace.
func (c Config) workspaceTunnel(ctx context.Context, name string) (tunnel.Tunnel, error) {
	if c.Workspace == nil {
		return nil, errcat.Config.Newf("no workspace to find proxy %q in", name)
	}
	snap, err := c.Workspace.Load()
	if err != nil {
		return nil, err
	}
	px, ok := snap.File.Proxy(name)
	if !ok {
		var names []string
		for _, p := range snap.File.Proxies {
			names = append(names, p.Name)
		}
		sort.Strings(names)
		known := "none"
		if len(names) > 0 {
			known = strings.Join(names, ", ")
		}
		return nil, errcat.User.Newf("no proxy named %q in %s (proxies: %s)", name, c.Workspace.Path(), known)
	}
	if ps := workspace.ValidateProxy(px); len(ps) > 0 {
		return nil, ps
	}
	return launch.OpenTunnel(ctx, c.Workspace.Dir, px, launch.Hooks{Prompts: c.Prompts, Logger: c.Logger})
}
