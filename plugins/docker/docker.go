// Package docker runs an app in a local Docker container next to an
// intercepting sidecar (tether-agent sidecar). The sidecar starts first, owns
// the network namespace (published ports, host.docker.internal) and NET_ADMIN;
// the app container joins it with NetworkMode "container:<sidecar>". Every
// container is labelled with the session, owner and workspace so that Clean
// removes the leftovers of a crashed backend, and only its own.
//
// The daemon is reached through github.com/docker/docker/client with API
// version negotiation (Debian's docker.io 20.10, API 1.41, and current ones),
// always behind the API interface below.
//
// Its errors carry their category (internal/errcat): the daemon, images,
// ports and the sidecar are environment errors (every Err* kind below is
// one); a malformed ports or volumes entry of the run configuration, or a
// DOCKER_HOST that does not parse, is a config error.
package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tether-dev/tether/internal/errcat"
)

// API is the part of the Docker Engine client that this package uses. It is
// kept this small so that a move to github.com/moby/moby/client (whose
// methods take option structs and return result structs) only needs an
// adapter implementing these methods.
type API interface {
	Ping(ctx context.Context) (types.Ping, error)
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageBuild(ctx context.Context, buildContext io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)
	ImageRemove(ctx context.Context, image string, options image.RemoveOptions) ([]image.DeleteResponse, error)
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, container string, options container.StartOptions) error
	ContainerWait(ctx context.Context, container string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerLogs(ctx context.Context, container string, options container.LogsOptions) (io.ReadCloser, error)
	ContainerStop(ctx context.Context, container string, options container.StopOptions) error
	ContainerRemove(ctx context.Context, container string, options container.RemoveOptions) error
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, container string) (container.InspectResponse, error)
	NetworkInspect(ctx context.Context, network string, options network.InspectOptions) (network.Inspect, error)
}

var _ API = (*client.Client)(nil)

// Errors a caller can test with errors.Is; the error text itself always says
// what happened and what to do. All are environment errors (errcat).
var (
	ErrDaemonNotRunning = errcat.Environment.New("docker daemon not running")
	ErrImageNotFound    = errcat.Environment.New("image not found locally")
	ErrPortTaken        = errcat.Environment.New("port already in use")
	ErrNoNetAdmin       = errcat.Environment.New("sidecar lacks NET_ADMIN")
	ErrSidecarNotReady  = errcat.Environment.New("sidecar not ready")
)

// Error is a failure with a user-facing message; it matches its Kind (one of
// the Err* values) and the underlying error with errors.Is/As.
type Error struct {
	Kind error
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	if e.Err != nil && !strings.Contains(e.Msg, e.Err.Error()) {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// Unwrap returns the kind and the cause.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Docker is a connection to a Docker daemon.
type Docker struct {
	api  API
	host string
	// closer is the owned client, nil when the API was supplied by the caller.
	closer io.Closer
}

// pingTimeout bounds the daemon check in New.
const pingTimeout = 5 * time.Second

// New connects to the daemon named by the environment (DOCKER_HOST,
// DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY; default
// unix:///var/run/docker.sock), negotiates the API version and checks that
// the daemon answers. A daemon that does not answer gives an error wrapping
// ErrDaemonNotRunning that says how to start it.
func New(ctx context.Context) (*Docker, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, errcat.Config.Newf("docker client: %w", err) // DOCKER_HOST and friends
	}
	d := &Docker{api: cli, host: cli.DaemonHost(), closer: cli}
	if err := d.Ping(ctx); err != nil {
		cli.Close()
		return nil, err
	}
	return d, nil
}

// NewWithAPI wraps an existing client (or a fake in tests); host is only used
// in messages. Close does not close api.
func NewWithAPI(api API, host string) *Docker {
	return &Docker{api: api, host: host}
}

// API returns the underlying client.
func (d *Docker) API() API { return d.api }

// Host is the daemon address, e.g. unix:///var/run/docker.sock.
func (d *Docker) Host() string { return d.host }

// Close releases the client created by New.
func (d *Docker) Close() error {
	if d.closer != nil {
		return d.closer.Close()
	}
	return nil
}

// Ping checks that the daemon answers (and negotiates the API version).
func (d *Docker) Ping(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := d.api.Ping(pctx); err != nil {
		if ctx.Err() == nil && pctx.Err() != nil {
			return &Error{Kind: ErrDaemonNotRunning, Err: err, Msg: fmt.Sprintf(
				"Docker daemon at %s did not answer within %s: check that it is running (sudo systemctl status docker)", d.host, pingTimeout)}
		}
		return d.daemonError(err)
	}
	return nil
}

// daemonError turns a failure to reach the daemon into a clear message;
// other errors are the daemon's answers: environment errors.
func (d *Docker) daemonError(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "permission denied") && strings.HasPrefix(d.host, "unix://"):
		return &Error{Kind: ErrDaemonNotRunning, Err: err, Msg: fmt.Sprintf(
			"no permission to use the Docker daemon at %s: add your user to the docker group (sudo usermod -aG docker $USER, then log in again) or run as root", d.host)}
	case client.IsErrConnectionFailed(err), isDialError(msg):
		return &Error{Kind: ErrDaemonNotRunning, Err: err, Msg: fmt.Sprintf(
			"Docker daemon not running at %s: start it (sudo systemctl start docker, or dockerd)", d.host)}
	}
	return errcat.Environment.Wrap(err)
}

func isDialError(msg string) bool {
	for _, s := range []string{"Cannot connect to the Docker daemon", "dial unix ", "dial tcp ", "dial npipe "} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// isNotFound reports a 404 from the daemon.
func isNotFound(err error) bool { return err != nil && cerrdefs.IsNotFound(err) }

// imageExists reports whether ref is present locally.
func (d *Docker) imageExists(ctx context.Context, ref string) (image.InspectResponse, bool, error) {
	ins, err := d.api.ImageInspect(ctx, ref)
	if err == nil {
		return ins, true, nil
	}
	if isNotFound(err) {
		return ins, false, nil
	}
	return ins, false, d.daemonError(fmt.Errorf("inspect image %s: %w", ref, err))
}

// RequireImage returns a clear error wrapping ErrImageNotFound when ref is
// not present locally (Tether never pulls: no registry may be reachable).
func (d *Docker) RequireImage(ctx context.Context, ref string) error {
	_, ok, err := d.imageExists(ctx, ref)
	if err != nil {
		return err
	}
	if !ok {
		return &Error{Kind: ErrImageNotFound, Msg: fmt.Sprintf(
			"image %s not found locally: build or load it — no registry is reachable", ref)}
	}
	return nil
}

var hostname = func() string {
	h, _ := os.Hostname()
	return h
}()
