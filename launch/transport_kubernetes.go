package launch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/tether-dev/tether/plugins/kubernetes"
	sshplugin "github.com/tether-dev/tether/plugins/ssh"
	"github.com/tether-dev/tether/progress"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/workspace"
)

// kubernetes proxies: a temporary agent pod reached through the API server
// (plugins/kubernetes); the SSH tunnel runs over the port-forward.

func init() { registerTransport(kubeTransport{}) }

type kubeTransport struct{}

func (kubeTransport) Kind() string                        { return "kubernetes" }
func (kubeTransport) Configured(px *workspace.Proxy) bool { return px.Kubernetes != nil }

func (kubeTransport) Open(ctx context.Context, dir string, px *workspace.Proxy, h Hooks, report func(string)) (tunnel.Tunnel, error) {
	log := h.logger().With("proxy", px.Name)
	progress.Report(ctx, "starting a temporary agent pod for proxy %s", px.Name)
	restoreIdleRouters(kubeConfig(dir, px.Kubernetes, log, nil), log)
	return kubernetes.Open(ctx, kubeConfig(dir, px.Kubernetes, log, report))
}

// Test runs the steps of kubernetes.Check: kubeconfig, apiServer,
// permissions, image, dial (through a real agent pod, deleted afterwards;
// default target: the API server's Service from inside the cluster).
func (kubeTransport) Test(ctx context.Context, dir string, px *workspace.Proxy, _ sshplugin.Prompts, target string) protocol.ProxyTestResult {
	res := protocol.ProxyTestResult{OK: true}
	cfg := kubeConfig(dir, px.Kubernetes, nil, func(msg string) { progress.Report(ctx, "%s", msg) })
	kubernetes.Check(ctx, cfg, target, func(name string, took time.Duration, err error, msg string) bool {
		s := protocol.TestStep{Name: name, OK: err == nil, Message: msg, DurationMs: took.Milliseconds()}
		if err != nil {
			s.Message = err.Error()
			res.OK = false
		}
		progress.Report(ctx, "%s: %s", name, s.Message)
		res.Steps = append(res.Steps, s)
		return err == nil
	})
	if len(res.Steps) == 0 {
		res.OK = false
	}
	return res
}

// discovered caches the routes discovered per kubernetes proxy (cluster
// CIDRs and DNS suffixes do not change while the backend runs).
var discovered sync.Map // proxy name + kubeconfig/context/namespace -> [2][]string

// DefaultRoutes are the cluster's service and pod CIDRs and DNS suffixes,
// discovered from the API server; none (everything through the pod) when
// that fails.
func (kubeTransport) DefaultRoutes(ctx context.Context, dir string, px *workspace.Proxy, log *slog.Logger) (cidrs, domains []string) {
	k := px.Kubernetes
	key := px.Name + "\x00" + k.Kubeconfig + "\x00" + k.Context + "\x00" + k.Namespace
	if v, ok := discovered.Load(key); ok {
		r := v.([2][]string)
		return r[0], r[1]
	}
	cidrs, domains, err := kubernetes.DefaultRoutes(ctx, kubeConfig(dir, k, log, nil))
	if err != nil {
		log.Warn("could not discover the cluster's routes; everything goes through the pod", "proxy", px.Name, "err", err)
		return nil, nil
	}
	log.Info("cluster routes", "proxy", px.Name, "cidrs", cidrs, "domains", domains)
	discovered.Store(key, [2][]string{cidrs, domains})
	return cidrs, domains
}

// Clean restores the Services of idle lane routers and removes the agent
// pods of this user's crashed sessions (all of this user's with all).
func (kubeTransport) Clean(ctx context.Context, dir string, px *workspace.Proxy, all bool) ([]string, error) {
	var removed []string
	cfg := kubeConfig(dir, px.Kubernetes, nil, nil)
	svcs, err := kubernetes.CleanLanes(ctx, cfg)
	for _, s := range svcs {
		removed = append(removed, "lane router of Service "+s+" (selector restored)")
	}
	if err != nil {
		return removed, err
	}
	r, err := kubernetes.Clean(ctx, cfg, all)
	return append(removed, r...), err
}

func kubeConfig(dir string, k *workspace.KubernetesProxy, log *slog.Logger, report func(string)) kubernetes.Config {
	return kubernetes.Config{Kubeconfig: resolvePath(dir, k.Kubeconfig), Context: k.Context, Namespace: k.Namespace,
		Image: k.Image, PortForward: k.PortForward, Logger: log, Progress: report}
}

// restoreIdleRouters restores, in the background, the Services of a
// kubernetes proxy whose lane router is idle (kubernetes.CleanLanes).
func restoreIdleRouters(cfg kubernetes.Config, log *slog.Logger) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done, err := kubernetes.CleanLanes(ctx, cfg)
		if len(done) > 0 {
			log.Info("restored Services of idle lane routers", "services", done)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Debug("checking idle lane routers", "err", err)
		}
	}()
}
