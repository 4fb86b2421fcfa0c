package launch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/tether-dev/tether/internal/agentproto"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/plugins/docker"
	"github.com/tether-dev/tether/progress"
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
		return "", errcat.Environment.Wrap(err)
	}
	bin := filepath.Join(filepath.Dir(exe), "tether-agent")
	if _, err := os.Stat(bin); err != nil {
		return "", errcat.Environment.Newf("no tether-agent next to %s to build the sidecar image from: install it there, or set TETHER_SIDECAR_IMAGE to a published image", exe)
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

func init() { registerRuntime(dockerRuntime{}) }

type dockerRuntime struct{}

func (dockerRuntime) Type() string { return workspace.TypeDocker }

func (dockerRuntime) Start(ctx context.Context, s *starting) (App, error) {
	d, err := docker.New(ctx)
	if err != nil {
		return nil, errcat.Environment.Wrap(err)
	}
	app, err := startContainer(ctx, s, d)
	if err != nil {
		d.Close()
		return nil, err
	}
	return app, nil
}

// startContainer readies the sidecar image, opens the interconnect, wires
// the sidecar to it and starts the app's container.
func startContainer(ctx context.Context, s *starting, d *docker.Docker) (App, error) {
	sidecar, err := ensureSidecar(ctx, d)
	if err != nil {
		return nil, errcat.Environment.Wrap(err)
	}
	ic, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	sidecarArgs, sidecarEnv, err := sidecarWiring(ctx, d, ic, s.px)
	if err != nil {
		return nil, err
	}
	dc := s.rc.Docker
	env := map[string]string{}
	for k, v := range s.rc.Env {
		env[k] = v
	}
	for k, v := range dc.Env {
		env[k] = v
	}
	for _, ex := range ic.Exposed() {
		_, e := registryArgs(ex.Registry, ex.Address)
		for k, v := range e {
			env[k] = v
		}
	}
	debugPort := 0
	var sess *docker.Session
	var debugAddr func() string
	if s.debug {
		env["JAVA_TOOL_OPTIONS"] = strings.TrimSpace(env["JAVA_TOOL_OPTIONS"] + " " + jdwpOptions)
		debugPort = 5005
		// Known once Start has published the port; debugReady waits for
		// the launch to run, after Start returned.
		debugAddr = func() string { return sess.DebugAddress() }
	}
	sess, err = d.Start(ctx, docker.RunSpec{
		Session: s.id, Workspace: s.m.Workspace.Dir, Image: dc.Image, Command: dc.Command, Args: dc.Args, Env: env,
		Ports: dc.Ports, Volumes: dc.Volumes, Workdir: dc.Workdir, User: dc.User,
		SidecarImage: sidecar, SidecarArgs: sidecarArgs, SidecarEnv: sidecarEnv, DebugPort: debugPort,
	}, s.output(debugAddr))
	if err != nil {
		return nil, errcat.Environment.Wrap(err)
	}
	log := s.m.Hooks.logger().With("launch", s.id)
	log.Info("container started", "config", s.rc.Name, "app", sess.AppID, "sidecar", sess.SidecarID)
	return containerApp{s: sess, d: d, log: log}, nil
}

// sidecarWiring is the sidecar's args and env: with the interconnect off
// it only holds the network namespace; with it on it redirects the
// namespace's TCP connections and DNS queries to the session's channel,
// which listens for it on the Docker bridge gateway (with the session's
// credentials).
func sidecarWiring(ctx context.Context, d *docker.Docker, ic *Interconnect, px *workspace.Proxy) ([]string, map[string]string, error) {
	if ic == nil {
		return []string{"hold"}, map[string]string{}, nil
	}
	gw, err := d.GatewayIP(ctx)
	if err != nil {
		return nil, nil, errcat.Environment.Wrap(fmt.Errorf("making the channel reachable from containers: %w", err))
	}
	addr, err := ic.Channel.ListenSOCKS(net.JoinHostPort(gw, "0"))
	if err != nil {
		return nil, nil, errcat.Environment.Wrap(fmt.Errorf("making the channel reachable from containers: %w", err))
	}
	_, port, _ := net.SplitHostPort(addr)
	var domains []string
	if px.Routes != nil {
		domains = px.Routes.Domains
	}
	args := agentproto.SidecarArgs(net.JoinHostPort("host.docker.internal", port), domains)
	env := map[string]string{"TETHER_SOCKS_USER": ic.Channel.Username(), "TETHER_SOCKS_PASSWORD": ic.Channel.Password()}
	return args, env, nil
}

// containerApp is the app's container (with its sidecar) as a launch's
// App.
type containerApp struct {
	s   *docker.Session
	d   *docker.Docker
	log *slog.Logger
}

func (a containerApp) Wait() int {
	code, err := a.s.Wait(context.Background())
	if err != nil {
		a.log.Warn("container ended with an error", "err", err)
	}
	_ = a.s.Stop(context.Background())
	a.d.Close()
	return code
}

func (a containerApp) Stop() { _ = a.s.Stop(context.Background()) }

// Clean removes the containers that crashed backends of this user left
// behind (all of this user's with all).
func Clean(ctx context.Context, all bool) ([]string, error) {
	d, err := docker.New(ctx)
	if errors.Is(err, docker.ErrDaemonNotRunning) {
		return nil, nil // no Docker: no containers to clean
	}
	if err != nil {
		return nil, errcat.Environment.Wrap(err)
	}
	defer d.Close()
	removed, err := docker.Clean(ctx, d, all)
	return removed, errcat.Environment.Wrap(err)
}
