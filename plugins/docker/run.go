package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/progress"
)

// SidecarReadyLine is what the sidecar prints on stdout once its
// interception is installed and the app may start.
const SidecarReadyLine = "tether-sidecar ready"

// DefaultReadyTimeout bounds the wait for SidecarReadyLine.
const DefaultReadyTimeout = 10 * time.Second

// Stop grace periods (seconds) before SIGKILL.
const (
	appStopGrace     = 3
	sidecarStopGrace = 1
)

// RunSpec describes one app container and its sidecar.
type RunSpec struct {
	Session   string // session id: container names and labels; [A-Za-z0-9_.-]
	Workspace string // workspace root: label, and base of relative volume sources
	OwnerPID  int    // the owning backend process; 0 = this process

	// The app container. Command replaces the image's ENTRYPOINT and Args
	// its CMD (as Kubernetes command/args; Command alone drops the image's
	// CMD, as `docker run --entrypoint` does).
	Image         string
	Command, Args []string
	Env           map[string]string
	Ports         []string // as `docker run -p`: "8080:8080", "127.0.0.1:8080:80/tcp", "9000"
	Volumes       []string // as `docker run -v`: "/host:/ctr:ro"; "./x" and "~/x" sources resolve against Workspace / home
	Workdir, User string

	// The sidecar (tether-agent). SidecarArgs is its CMD: the agent image's
	// ENTRYPOINT is the agent binary, so SidecarArgs starts with "sidecar".
	SidecarImage string
	SidecarArgs  []string
	SidecarEnv   map[string]string

	// DebugPort is a container port (e.g. JDWP 5005) published on a free
	// loopback host port, see Session.DebugAddress; 0 = none.
	DebugPort int

	// ReadyTimeout bounds the wait for the sidecar's ready line; 0 = DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Progress, if set, receives progress messages (as does progress.Report on ctx).
	Progress func(string)
	// SidecarOutput, if set, receives the sidecar's log output ("stdout"/"stderr").
	SidecarOutput func(stream string, data []byte)
}

// Session is a running app container and its sidecar.
type Session struct {
	SidecarID string
	AppID     string
	Name      string // container name prefix: tether-<session>

	d         *Docker
	debugAddr string
	ports     map[string][]string // "8080/tcp" -> ["0.0.0.0:8080", ...]

	cancel      context.CancelFunc // ends the log streams
	sidecarLog  *lineLog
	sidecarLogs chan struct{} // closed when the sidecar's log stream ends
	sidecarDone chan struct{} // closed when the sidecar has exited
	appLogs     chan struct{} // closed when the app's log stream ends

	appOnce  sync.Once
	appDone  chan struct{}
	exitCode int
	appErr   error

	failMu  sync.Mutex
	failure error // the sidecar died under the app

	appStarted atomic.Bool
	stopping   atomic.Bool
	stopMu     sync.Mutex
	stopped    bool
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Start creates and starts the sidecar, waits for its ready line, then
// creates and starts the app container in the sidecar's network namespace
// and streams the app's output to out ("stdout" and "stderr" apart; out may
// be nil). On any error nothing is left behind. The session outlives ctx
// (only ctx's values are kept): end it with Stop.
func (d *Docker) Start(ctx context.Context, spec RunSpec, out func(stream string, data []byte)) (*Session, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	if out == nil {
		out = func(string, []byte) {}
	}
	report := func(format string, args ...any) {
		progress.Report(ctx, format, args...)
		if spec.Progress != nil {
			spec.Progress(fmt.Sprintf(format, args...))
		}
	}

	// Images first: Tether never pulls (no registry may be reachable).
	for _, ref := range []string{spec.SidecarImage, spec.Image} {
		if err := d.RequireImage(ctx, ref); err != nil {
			return nil, err
		}
	}
	exposed, bindings, err := spec.portMap()
	if err != nil {
		return nil, err
	}
	binds, err := spec.binds()
	if err != nil {
		return nil, err
	}

	owner := ownerOf(spec.OwnerPID)
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Session{
		Name:        "tether-" + spec.Session,
		d:           d,
		cancel:      cancel,
		sidecarLog:  newLineLog(40),
		sidecarLogs: make(chan struct{}),
		sidecarDone: make(chan struct{}),
		appLogs:     make(chan struct{}),
		appDone:     make(chan struct{}),
	}
	fail := func(err error) (*Session, error) {
		s.stopping.Store(true)
		s.remove(context.WithoutCancel(ctx))
		cancel()
		return nil, err
	}

	// The sidecar owns the network namespace: published ports, extra hosts.
	report("Starting sidecar container")
	created, err := d.create(ctx, &container.Config{
		Image:        spec.SidecarImage,
		Cmd:          spec.SidecarArgs,
		Env:          envList(spec.SidecarEnv),
		Labels:       owner.Labels(spec.Session, spec.Workspace, "sidecar"),
		ExposedPorts: exposed,
	}, &container.HostConfig{
		CapAdd:       []string{"NET_ADMIN"},
		ExtraHosts:   []string{"host.docker.internal:host-gateway"},
		PortBindings: bindings,
		NetworkMode:  "bridge",
	}, s.Name+"-sidecar")
	if err != nil {
		return fail(d.createError("sidecar", spec.SidecarImage, err))
	}
	s.SidecarID = created.ID
	ready := make(chan struct{})
	var readyOnce sync.Once
	s.sidecarLog.onLine = func(stream, line string) {
		if strings.Contains(line, SidecarReadyLine) {
			readyOnce.Do(func() { close(ready) })
		}
	}
	if err := d.api.ContainerStart(ctx, s.SidecarID, container.StartOptions{}); err != nil {
		return fail(d.startError("sidecar", err))
	}
	go s.streamSidecar(sctx, spec.SidecarOutput)
	go s.watchSidecar(sctx)

	timeout := spec.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	report("Waiting for the sidecar")
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-ready:
	case <-s.sidecarDone:
		select { // let the last lines arrive
		case <-s.sidecarLogs:
		case <-time.After(time.Second):
		}
		return fail(s.sidecarFailure("the sidecar exited before the app could start"))
	case <-timer.C:
		return fail(s.sidecarFailure(fmt.Sprintf("the sidecar did not print %q within %s", SidecarReadyLine, timeout)))
	case <-ctx.Done():
		return fail(ctx.Err())
	}

	ins, err := d.api.ContainerInspect(ctx, s.SidecarID)
	if err != nil {
		return fail(d.daemonError(fmt.Errorf("inspect sidecar: %w", err)))
	}
	s.ports = map[string][]string{}
	if ins.NetworkSettings != nil {
		for p, bs := range ins.NetworkSettings.Ports {
			for _, b := range bs {
				s.ports[string(p)] = append(s.ports[string(p)], net.JoinHostPort(b.HostIP, b.HostPort))
			}
		}
	}
	if spec.DebugPort > 0 {
		for _, a := range s.ports[fmt.Sprintf("%d/tcp", spec.DebugPort)] {
			if h, _, _ := net.SplitHostPort(a); h == "127.0.0.1" {
				s.debugAddr = a
				break
			}
		}
		if s.debugAddr == "" {
			return fail(errcat.Environment.Newf("the daemon did not publish debug port %d on 127.0.0.1", spec.DebugPort))
		}
	}

	report("Starting app container %s", spec.Image)
	var entrypoint []string
	if len(spec.Command) > 0 {
		entrypoint = spec.Command
	}
	app, err := d.create(ctx, &container.Config{
		Image:      spec.Image,
		Entrypoint: entrypoint,
		Cmd:        spec.Args,
		Env:        envList(spec.Env),
		WorkingDir: spec.Workdir,
		User:       spec.User,
		Labels:     owner.Labels(spec.Session, spec.Workspace, "app"),
	}, &container.HostConfig{
		NetworkMode: container.NetworkMode("container:" + s.SidecarID),
		Binds:       binds,
	}, s.Name+"-app")
	if err != nil {
		return fail(d.createError("app", spec.Image, err))
	}
	s.AppID = app.ID
	if err := d.api.ContainerStart(ctx, s.AppID, container.StartOptions{}); err != nil {
		return fail(d.startError("app", err))
	}
	s.appStarted.Store(true)
	go s.waitApp(sctx)
	go s.streamApp(sctx, out)
	report("App container running")
	return s, nil
}

// DebugAddress is the loopback address (127.0.0.1:PORT) where
// RunSpec.DebugPort is published, or "" without a debug port.
func (s *Session) DebugAddress() string { return s.debugAddr }

// PublishedAddress returns a dialable host address for a published container
// port ("8080" or "8080/udp"): a loopback binding when there is one, with an
// unspecified host IP replaced by 127.0.0.1.
func (s *Session) PublishedAddress(containerPort string) (string, bool) {
	if !strings.Contains(containerPort, "/") {
		containerPort += "/tcp"
	}
	var best string
	for _, a := range s.ports[containerPort] {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		switch h {
		case "", "0.0.0.0", "::":
			h = "127.0.0.1"
		}
		addr := net.JoinHostPort(h, p)
		if best == "" || h == "127.0.0.1" && !strings.HasPrefix(best, "127.0.0.1:") {
			best = addr
		}
	}
	return best, best != ""
}

// SidecarLog returns the sidecar's last log lines.
func (s *Session) SidecarLog() []string { return s.sidecarLog.lines() }

// Wait waits until the app container exits and its output has been
// delivered, and returns its exit code. The error is set when the wait
// failed, or when the sidecar died under the app (the app is then stopped).
func (s *Session) Wait(ctx context.Context) (int, error) {
	select {
	case <-s.appDone:
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	select {
	case <-s.appLogs:
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	s.failMu.Lock()
	failure := s.failure
	s.failMu.Unlock()
	if s.appErr != nil {
		return s.exitCode, s.appErr
	}
	return s.exitCode, failure
}

// Stop stops the app then the sidecar (short grace, then SIGKILL) and removes
// both containers. It is idempotent and runs to completion even when ctx is
// cancelled (Ctrl-C), bounded by a timeout of its own.
func (s *Session) Stop(ctx context.Context) error {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopping.Store(true)
	err := s.remove(context.WithoutCancel(ctx))
	if err == nil {
		s.stopped = true
		s.finishApp(-1, errors.New("stopped"))
		s.cancel()
	}
	return err
}

// remove stops and removes both containers; not-found is success.
func (s *Session) remove(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var errs []error
	stop := func(id string, grace int) {
		if id == "" {
			return
		}
		if err := s.d.api.ContainerStop(ctx, id, container.StopOptions{Timeout: &grace}); err != nil && !isNotFound(err) {
			errs = append(errs, s.d.daemonError(fmt.Errorf("stop container %.12s: %w", id, err)))
		}
	}
	rm := func(id string) {
		if id == "" {
			return
		}
		if err := s.d.api.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !isNotFound(err) {
			errs = append(errs, s.d.daemonError(fmt.Errorf("remove container %.12s: %w", id, err)))
		}
	}
	stop(s.AppID, appStopGrace)
	if s.AppID != "" {
		// Record the exit code before the container (and its wait) goes away.
		if ins, err := s.d.api.ContainerInspect(ctx, s.AppID); err == nil && ins.State != nil && !ins.State.Running {
			s.finishApp(ins.State.ExitCode, nil)
		}
	}
	stop(s.SidecarID, sidecarStopGrace)
	rm(s.AppID)
	rm(s.SidecarID)
	return errors.Join(errs...)
}

func (s *Session) finishApp(code int, err error) {
	s.appOnce.Do(func() {
		s.exitCode, s.appErr = code, err
		close(s.appDone)
	})
}

func (s *Session) waitApp(ctx context.Context) {
	respc, errc := s.d.api.ContainerWait(ctx, s.AppID, container.WaitConditionNotRunning)
	select {
	case r := <-respc:
		var err error
		if r.Error != nil && r.Error.Message != "" {
			err = errcat.Environment.Newf("app container: %s", r.Error.Message)
		}
		s.finishApp(int(r.StatusCode), err)
	case err := <-errc:
		if s.stopping.Load() {
			return // Stop records the exit code
		}
		s.finishApp(-1, s.d.daemonError(fmt.Errorf("wait for app container: %w", err)))
	}
}

func (s *Session) watchSidecar(ctx context.Context) {
	defer close(s.sidecarDone)
	respc, errc := s.d.api.ContainerWait(ctx, s.SidecarID, container.WaitConditionNotRunning)
	var code int64 = -1
	select {
	case r := <-respc:
		code = r.StatusCode
	case <-errc:
		return
	}
	if s.stopping.Load() || !s.appStarted.Load() {
		return
	}
	select {
	case <-s.appDone:
		return
	default:
	}
	select {
	case <-s.sidecarLogs:
	case <-time.After(time.Second):
	}
	err := s.sidecarFailure(fmt.Sprintf("the sidecar exited (code %d) while the app was running; the app has no network and was stopped", code))
	s.failMu.Lock()
	s.failure = err
	s.failMu.Unlock()
	grace := 2
	_ = s.d.api.ContainerStop(context.WithoutCancel(ctx), s.AppID, container.StopOptions{Timeout: &grace})
}

func (s *Session) streamSidecar(ctx context.Context, raw func(string, []byte)) {
	defer close(s.sidecarLogs)
	rc, err := s.d.api.ContainerLogs(ctx, s.SidecarID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		s.sidecarLog.add("stderr", "(cannot read sidecar logs: "+err.Error()+")")
		return
	}
	defer rc.Close()
	stdout := s.sidecarLog.writer("stdout", raw)
	stderr := s.sidecarLog.writer("stderr", raw)
	_, _ = stdcopy.StdCopy(stdout, stderr, rc)
	stdout.flush()
	stderr.flush()
}

func (s *Session) streamApp(ctx context.Context, out func(string, []byte)) {
	defer close(s.appLogs)
	rc, err := s.d.api.ContainerLogs(ctx, s.AppID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		out("stderr", []byte("tether: cannot read the app container's logs: "+err.Error()+"\n"))
		return
	}
	defer rc.Close()
	_, _ = stdcopy.StdCopy(streamWriter{"stdout", out}, streamWriter{"stderr", out}, rc)
}

// sidecarFailure builds the error for a sidecar that is not (or no longer)
// working, with its exit state and last log lines.
func (s *Session) sidecarFailure(what string) error {
	lines := s.sidecarLog.lines()
	msg := what
	if len(lines) > 0 {
		msg += "; its last log lines:\n  " + strings.Join(lines, "\n  ")
	} else {
		msg += " (it printed nothing)"
	}
	kind := ErrSidecarNotReady
	low := strings.ToLower(strings.Join(lines, "\n"))
	if strings.Contains(low, "operation not permitted") || strings.Contains(low, "net_admin") {
		kind = ErrNoNetAdmin
		msg += "\nThe sidecar needs CAP_NET_ADMIN in its container to install the redirection; this Docker daemon (rootless, or a restrictive security policy?) did not grant it."
	}
	return &Error{Kind: kind, Msg: msg}
}

var portInUseRE = regexp.MustCompile(`(?:listen tcp[46]? |Bind for )(\S+?):(\d+)(?::| failed)`)

// startError explains a container start failure.
func (d *Docker) startError(what string, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "address already in use") || strings.Contains(msg, "port is already allocated") {
		port := ""
		if m := portInUseRE.FindStringSubmatch(msg); m != nil {
			port = net.JoinHostPort(strings.Trim(m[1], "[]"), m[2])
		}
		return &Error{Kind: ErrPortTaken, Err: err, Msg: fmt.Sprintf(
			"cannot publish port %s: it is already in use on the host; stop what uses it or change the ports of the run configuration", port)}
	}
	return d.daemonError(fmt.Errorf("start %s container: %w", what, err))
}

// create creates a container; a container already holding the name is
// removed first when it is a leftover of ours (dead owner, see Clean),
// otherwise the conflict is reported clearly.
func (d *Docker) create(ctx context.Context, cfg *container.Config, hc *container.HostConfig, name string) (container.CreateResponse, error) {
	resp, err := d.api.ContainerCreate(ctx, cfg, hc, nil, nil, name)
	if err == nil || !cerrdefs.IsConflict(err) {
		return resp, err
	}
	old, ierr := d.api.ContainerInspect(ctx, name)
	if ierr != nil || old.Config == nil || !shouldClean(old.Config.Labels, Self(), false, alive) {
		return resp, fmt.Errorf("a container named %s already exists and belongs to a running session or to someone else: stop that session, or remove it (docker rm -f %s): %w", name, name, err)
	}
	if rerr := d.api.ContainerRemove(ctx, old.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); rerr != nil && !isNotFound(rerr) {
		return resp, fmt.Errorf("remove leftover container %s: %w", name, rerr)
	}
	return d.api.ContainerCreate(ctx, cfg, hc, nil, nil, name)
}

// createError explains a container create failure.
func (d *Docker) createError(what, ref string, err error) error {
	if isNotFound(err) && strings.Contains(err.Error(), "image") {
		return &Error{Kind: ErrImageNotFound, Err: err, Msg: fmt.Sprintf(
			"image %s not found locally: build or load it — no registry is reachable", ref)}
	}
	return d.daemonError(fmt.Errorf("create %s container: %w", what, err))
}

func (spec *RunSpec) validate() error {
	switch {
	case spec.Session == "" || !nameRE.MatchString(spec.Session):
		return fmt.Errorf("docker run: session id %q must match [A-Za-z0-9][A-Za-z0-9_.-]*", spec.Session)
	case spec.Image == "":
		return errors.New("docker run: no image")
	case spec.SidecarImage == "":
		return errors.New("docker run: no sidecar image")
	case spec.DebugPort < 0 || spec.DebugPort > 65535:
		return fmt.Errorf("docker run: debug port %d out of range", spec.DebugPort)
	}
	return nil
}

// portMap parses Ports (and DebugPort, on loopback with a free host port)
// into the sidecar's exposed ports and bindings.
func (spec *RunSpec) portMap() (nat.PortSet, nat.PortMap, error) {
	exposed, bindings, err := nat.ParsePortSpecs(spec.Ports)
	if err != nil {
		return nil, nil, errcat.Config.Newf("docker run: ports %q: %w", spec.Ports, err)
	}
	if exposed == nil {
		exposed = nat.PortSet{}
	}
	if bindings == nil {
		bindings = nat.PortMap{}
	}
	if spec.DebugPort > 0 {
		p := nat.Port(strconv.Itoa(spec.DebugPort) + "/tcp")
		exposed[p] = struct{}{}
		bindings[p] = append(bindings[p], nat.PortBinding{HostIP: "127.0.0.1", HostPort: ""})
	}
	return exposed, bindings, nil
}

// binds resolves relative ("./x", "../x", ".") and home ("~/x") volume
// sources; other sources (absolute paths, named volumes) are kept.
func (spec *RunSpec) binds() ([]string, error) {
	var out []string
	for _, v := range spec.Volumes {
		src, rest, ok := strings.Cut(v, ":")
		if !ok || src == "" || rest == "" {
			return nil, errcat.Config.Newf("docker run: volume %q: want SOURCE:TARGET[:OPTIONS]", v)
		}
		switch {
		case src == "~" || strings.HasPrefix(src, "~/"):
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, errcat.Environment.Newf("docker run: volume %q: %w", v, err)
			}
			src = filepath.Join(home, strings.TrimPrefix(src, "~"))
		case src == "." || src == ".." || strings.HasPrefix(src, "./") || strings.HasPrefix(src, "../"):
			base := spec.Workspace
			if base == "" {
				base, _ = os.Getwd()
			}
			abs, err := filepath.Abs(filepath.Join(base, src))
			if err != nil {
				return nil, errcat.Environment.Newf("docker run: volume %q: %w", v, err)
			}
			src = abs
		}
		out = append(out, src+":"+rest)
	}
	return out, nil
}

func envList(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	l := make([]string, 0, len(m))
	for k, v := range m {
		l = append(l, k+"="+v)
	}
	sort.Strings(l)
	return l
}

// streamWriter hands each write to out as a copy.
type streamWriter struct {
	stream string
	out    func(string, []byte)
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.out(w.stream, bytes.Clone(p))
	return len(p), nil
}

// lineLog keeps the last lines of a container's output.
type lineLog struct {
	mu     sync.Mutex
	max    int
	buf    []string
	onLine func(stream, line string)
}

func newLineLog(max int) *lineLog { return &lineLog{max: max} }

func (l *lineLog) add(stream, line string) {
	l.mu.Lock()
	l.buf = append(l.buf, line)
	if len(l.buf) > l.max {
		l.buf = l.buf[len(l.buf)-l.max:]
	}
	on := l.onLine
	l.mu.Unlock()
	if on != nil {
		on(stream, line)
	}
}

func (l *lineLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.buf...)
}

func (l *lineLog) writer(stream string, raw func(string, []byte)) *lineWriter {
	return &lineWriter{log: l, stream: stream, raw: raw}
}

// lineWriter splits one stream into lines for a lineLog.
type lineWriter struct {
	log     *lineLog
	stream  string
	raw     func(string, []byte)
	partial []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if w.raw != nil {
		w.raw(w.stream, bytes.Clone(p))
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.log.add(w.stream, strings.TrimRight(string(w.partial[:i]), "\r"))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 64<<10 { // a very long line without newline
		w.flush()
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.log.add(w.stream, string(w.partial))
		w.partial = nil
	}
}

var _ io.Writer = (*lineWriter)(nil)
