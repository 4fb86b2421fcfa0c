package launch

import (
	"context"
	"errors"
	"fmt"
	"github.com/tether-dev/tether/internal/agentproto"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tether-dev/tether/plugins/docker"
	"github.com/tether-dev/tether/progress"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

// Docker mode: the app runs in a local container that shares the network
// namespace of a sidecar (tether-agent). With interconnect on, the sidecar
// redirects every outbound TCP connection and DNS query of the namespace to
// the session's channel, reached through the Docker bridge gateway with the
// session's credentials; the channel routes them as for a local app.

// SidecarImage is the sidecar image reference: TETHER_SIDECAR_IMAGE (for
// users who publish the image), else a local image built from the
// tether-agent binary next to tether, tagged with this build's version
// (agentproto.Image: the backend and the sidecar speak one contract).
func SidecarImage() string {
	if v := os.Getenv("TETHER_SIDECAR_IMAGE"); v != "" {
		return v
	}
	return agentproto.Image()
}

// agentBinary finds the tether-agent binary that the sidecar image is built
// from: TETHER_AGENT_BINARY, else next to this executable.
func agentBinary() (string, error) {
	if v := os.Getenv("TETHER_AGENT_BINARY"); v != "" {
		return v, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(filepath.Dir(exe), "tether-agent")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("no tether-agent next to %s to build the sidecar image from: install it there, or set TETHER_SIDECAR_IMAGE to a published image", exe)
	}
	return bin, nil
}

// ensureSidecar builds the local sidecar image when it is missing or older
// than the tether-agent binary; a published image (TETHER_SIDECAR_IMAGE)
// must be present.
func ensureSidecar(ctx context.Context, d *docker.Docker) (string, error) {
	ref := SidecarImage()
	if os.Getenv("TETHER_SIDECAR_IMAGE") != "" {
		return ref, d.RequireImage(ctx, ref)
	}
	bin, err := agentBinary()
	if err != nil {
		return "", err
	}
	progress.Report(ctx, "preparing the sidecar image %s", ref)
	return ref, d.BuildAgentImage(ctx, bin, ref)
}

// jdwpOptions makes a JVM in the container listen for a debugger on 5005.
const jdwpOptions = "-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=*:5005"

func (m *Manager) startDocker(ctx context.Context, id string, rc *workspace.RunConfig, px *workspace.Proxy, debug bool,
	state func(protocol.LaunchStateParams)) (*Launch, error) {
	d, err := docker.New(ctx)
	if err != nil {
		return nil, err
	}
	sidecar, err := ensureSidecar(ctx, d)
	if err != nil {
		d.Close()
		return nil, err
	}
	sidecarArgs := []string{"hold"}
	sidecarEnv := map[string]string{}
	var ic *Interconnect
	if px != nil {
		state(protocol.LaunchStateParams{State: protocol.StateConnecting})
		if ic, err = m.open(ctx, rc, px, id); err != nil {
			d.Close()
			return nil, err
		}
		gw, err := d.GatewayIP(ctx)
		if err == nil {
			var addr string
			addr, err = ic.Channel.ListenSOCKS(net.JoinHostPort(gw, "0"))
			if err == nil {
				_, port, _ := net.SplitHostPort(addr)
				var domains []string
				if px.Routes != nil {
					domains = px.Routes.Domains
				}
				sidecarArgs = agentproto.SidecarArgs(net.JoinHostPort("host.docker.internal", port), domains)
				sidecarEnv["TETHER_SOCKS_USER"] = ic.Channel.Username()
				sidecarEnv["TETHER_SOCKS_PASSWORD"] = ic.Channel.Password()
			}
		}
		if err != nil {
			closeIC(ic)
			d.Close()
			return nil, fmt.Errorf("making the channel reachable from containers: %w", err)
		}
	}
	dc := rc.Docker
	env := map[string]string{}
	for k, v := range rc.Env {
		env[k] = v
	}
	for k, v := range dc.Env {
		env[k] = v
	}
	debugPort := 0
	if debug {
		env["JAVA_TOOL_OPTIONS"] = strings.TrimSpace(env["JAVA_TOOL_OPTIONS"] + " " + jdwpOptions)
		debugPort = 5005
	}
	if ic != nil {
		for _, ex := range ic.Exposed() {
			_, e := registryArgs(ex.Registry, ex.Address)
			for k, v := range e {
				env[k] = v
			}
		}
	}

	// The debug address is known once Start has published the port; the
	// JVM's "Listening" line may come just before Start returns.
	var mu sync.Mutex
	var sess *docker.Session
	listening := false
	ready := func() {
		state(protocol.LaunchStateParams{State: protocol.StateDebugReady, DebugAddress: sess.DebugAddress()})
	}
	out := func(stream string, data []byte) {
		if m.Hooks.OnOutput != nil {
			m.Hooks.OnOutput(id, stream, data)
		}
		if debugPort > 0 && jdwpListening.Match(data) {
			mu.Lock()
			defer mu.Unlock()
			if sess != nil && !listening {
				ready()
			}
			listening = true
		}
	}
	s, err := d.Start(ctx, docker.RunSpec{
		Session: id, Workspace: m.Workspace.Dir, Image: dc.Image, Command: dc.Command, Args: dc.Args, Env: env,
		Ports: dc.Ports, Volumes: dc.Volumes, Workdir: dc.Workdir, User: dc.User,
		SidecarImage: sidecar, SidecarArgs: sidecarArgs, SidecarEnv: sidecarEnv, DebugPort: debugPort,
	}, out)
	if err != nil {
		closeIC(ic)
		d.Close()
		return nil, err
	}
	mu.Lock()
	sess = s
	if listening {
		ready()
	}
	mu.Unlock()

	l := &Launch{ID: id, Config: rc.Name, ic: ic, ctr: s, done: make(chan struct{})}
	if !m.keep(func() { m.launches[id] = l }) {
		_ = s.Stop(context.Background())
		closeIC(ic)
		d.Close()
		return nil, errors.New("the client is going away")
	}
	m.Hooks.logger().Info("container started", "launch", id, "config", rc.Name, "app", s.AppID, "sidecar", s.SidecarID)
	state(protocol.LaunchStateParams{State: protocol.StateRunning, Exposed: ic.Exposed()})
	go func() {
		code, err := s.Wait(context.Background())
		if err != nil {
			m.Hooks.logger().Warn("container ended with an error", "launch", id, "err", err)
		}
		_ = s.Stop(context.Background())
		d.Close()
		l.exitCode = code
		if ic != nil {
			closeIC(ic) // waits for the app's last connections to be logged
			l.summary = ic.Summary()
		}
		m.mu.Lock()
		delete(m.launches, id)
		m.mu.Unlock()
		state(protocol.LaunchStateParams{State: protocol.StateExited, ExitCode: &code})
		close(l.done)
	}()
	return l, nil
}

// Clean removes the containers that crashed backends of this user left
// behind (all of this user's with all).
func Clean(ctx context.Context, all bool) ([]string, error) {
	d, err := docker.New(ctx)
	if errors.Is(err, docker.ErrDaemonNotRunning) {
		return nil, nil // no Docker: no containers to clean
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return docker.Clean(ctx, d, all)
}
