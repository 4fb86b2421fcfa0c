// Package kubernetes is the Kubernetes transport of Tether: "SSH over
// port-forward". Open creates a temporary agent pod (tether-agent as an SSH
// server that accepts only a per-session key), port-forwards to it through
// the API server with client-go (WebSocket tunnelling, SPDY fallback) and runs
// the SSH tunnel of plugins/ssh over those streams: one port-forward
// connection per SSH connection of the pool, so one failed stream does not
// take the others down. A deleted pod or a broken port-forward is replaced
// without the app noticing more than a reconnect.
//
// Its errors carry their category (internal/errcat). Config: the kubeconfig
// (missing, unreadable, no such context, credentials rejected), a namespace
// or Service that does not exist, an invalid image name, and RBAC refusals:
// a Forbidden answer is a config error, since no retry helps — the fix is a
// context or namespace where the credentials may act, or a Role from the
// cluster admin (the message names the verbs). Environment: the API server
// unreachable or slow, port-forward failures, an agent pod that cannot be
// scheduled, pulled or started, or is not ready in time.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tether-dev/tether/internal/agentproto"
	"github.com/tether-dev/tether/internal/errcat"
)

// DefaultImage is the agent image of this build: FROM scratch + the static
// tether-agent, tagged with the version (agentproto.Image; `make images`
// builds it).
var DefaultImage = agentproto.Image()

// DefaultIdleExit is how long the agent waits without a connected client
// before it exits (the pod then ends: restartPolicy Never).
const DefaultIdleExit = 60 * time.Second

// Config says which cluster and namespace to use.
type Config struct {
	Kubeconfig string // default: $KUBECONFIG, else ~/.kube/config
	Context    string // default: the kubeconfig's current context
	Namespace  string // default: the context's namespace, else "default"
	Image      string // default DefaultImage
	Session    string // session id (label tether.dev/session); default random

	Logger   *slog.Logger      // nil = discard
	Progress func(string)      // optional; must not block
	Owner    *Owner            // who owns the pods; default CurrentOwner()
	Extra    map[string]string // extra pod labels (optional)

	IdleExit        time.Duration // agent idle exit; default 60s
	ImagePullPolicy string        // default IfNotPresent
	ReadyTimeout    time.Duration // pod create -> Ready; default 2m
	PoolSize        int           // SSH connections (= port-forward connections); default 2
	ClusterDomain   string        // default cluster.local
	// SSHChannelsOnly turns the data port off: Dial uses SSH channels
	// (x/crypto/ssh's fixed 2 MiB window; ~0.3x the throughput). For
	// comparisons, and clusters whose port-forward cannot reach loopback.
	SSHChannelsOnly bool
	// PortForward is the protocol tried first for port-forward connections
	// to the agent: "spdy" (default) or "websocket" (kubectl's default
	// since 1.31); the other is used when the API server refuses the
	// upgrade. SPDY costs the API server and this process ~30% less CPU per
	// byte than SPDY tunnelled in WebSocket frames (docs/benchmarks.md).
	PortForward string
}

func (c *Config) defaults() {
	if c.Image == "" {
		c.Image = DefaultImage
	}
	if c.IdleExit <= 0 {
		c.IdleExit = DefaultIdleExit
	}
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = "IfNotPresent"
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 2 * time.Minute
	}
	if c.PoolSize <= 0 {
		c.PoolSize = 2
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Owner == nil {
		o := CurrentOwner()
		c.Owner = &o
	}
}

func (c *Config) progress(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.Logger.Debug(msg)
	if c.Progress != nil {
		c.Progress(msg)
	}
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, strings.TrimPrefix(p, "~"))
		}
	}
	return p
}

func loader(kubeconfig, context string) clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = expandHome(kubeconfig)
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: context})
}

// cluster is a resolved Config: the REST config, a clientset and the namespace.
type cluster struct {
	rest      *rest.Config
	client    k8s.Interface
	namespace string
	context   string
}

func connect(cfg Config) (*cluster, error) {
	cc := loader(cfg.Kubeconfig, cfg.Context)
	rc, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, errcat.Config.Newf("kubernetes: no kubeconfig found (set kubeconfig, $KUBECONFIG or create ~/.kube/config): %w", err)
		}
		return nil, errcat.Config.Newf("kubernetes: kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 50, 100
	rc.UserAgent = "tether"
	ns := cfg.Namespace
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil || ns == "" {
			ns = "default"
		}
	}
	ctxName := cfg.Context
	if ctxName == "" {
		if raw, err := cc.RawConfig(); err == nil {
			ctxName = raw.CurrentContext
		}
	}
	cs, err := k8s.NewForConfig(rc)
	if err != nil {
		return nil, errcat.Config.Newf("kubernetes: kubeconfig: %w", err)
	}
	return &cluster{rest: rc, client: cs, namespace: ns, context: ctxName}, nil
}

// Contexts lists the contexts of a kubeconfig ("" = the default loading
// rules) and the current one, for the IDE's picker.
func Contexts(kubeconfig string) ([]string, string, error) {
	raw, err := loader(kubeconfig, "").RawConfig()
	if err != nil {
		return nil, "", errcat.Config.Newf("kubernetes: kubeconfig: %w", err)
	}
	var out []string
	for name := range raw.Contexts {
		out = append(out, name)
	}
	sort.Strings(out)
	return out, raw.CurrentContext, nil
}

// Namespaces lists the namespaces the user may list; when listing is
// forbidden it returns the configured (or the context's) namespace alone.
func Namespaces(ctx context.Context, cfg Config) ([]string, error) {
	c, err := connect(cfg)
	if err != nil {
		return nil, err
	}
	list, err := c.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if apierrors.IsForbidden(err) {
		return []string{c.namespace}, nil
	}
	if err != nil {
		return nil, explain(err)
	}
	out := make([]string, 0, len(list.Items))
	for _, n := range list.Items {
		out = append(out, n.Name)
	}
	sort.Strings(out)
	return out, nil
}

// explain turns API errors into messages that name the permission or
// problem, tagged with their category (see the package comment).
func explain(err error) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		return errcat.Config.Newf("kubernetes: not allowed: %w", err)
	case apierrors.IsUnauthorized(err):
		return errcat.Config.Newf("kubernetes: credentials rejected (log in again / refresh the kubeconfig): %w", err)
	case apierrors.IsNotFound(err), apierrors.IsInvalid(err):
		return errcat.Config.Newf("kubernetes: %w", err)
	case errors.Is(err, context.DeadlineExceeded):
		return errcat.Environment.Newf("kubernetes: API server did not answer in time: %w", err)
	}
	return errcat.Environment.Newf("kubernetes: %w", err)
}
