package launch

import (
	"context"
	"log/slog"
	"sync"

	"github.com/tether-dev/tether/plugins/kubernetes"
	"github.com/tether-dev/tether/workspace"
)

// Kubernetes proxies: a temporary agent pod reached through the API server
// (plugins/kubernetes); the SSH tunnel runs over the port-forward.

func kubeConfig(dir string, k *workspace.KubernetesProxy, log *slog.Logger, report func(string)) kubernetes.Config {
	return kubernetes.Config{Kubeconfig: resolvePath(dir, k.Kubeconfig), Context: k.Context, Namespace: k.Namespace,
		Image: k.Image, Logger: log, Progress: report}
}

// discovered caches the routes discovered per kubernetes proxy (cluster
// CIDRs and DNS suffixes do not change while the backend runs).
var discovered sync.Map // proxy name + kubeconfig/context/namespace -> [2][]string

// routesOf returns the proxy's routes: its own, or for a kubernetes proxy
// without routes the cluster's service and pod CIDRs and DNS suffixes,
// discovered from the API server.
func routesOf(ctx context.Context, dir string, px *workspace.Proxy, log *slog.Logger) (cidrs, domains []string) {
	if px.Routes != nil && (len(px.Routes.CIDRs) > 0 || len(px.Routes.Domains) > 0) {
		return px.Routes.CIDRs, px.Routes.Domains
	}
	if px.Kubernetes == nil {
		return nil, nil
	}
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

// CleanPods removes the agent pods of this user's crashed sessions (all of
// this user's with all) in the clusters of the workspace's kubernetes
// proxies.
func CleanPods(ctx context.Context, ws *workspace.Workspace, all bool) ([]string, error) {
	s, err := ws.Load()
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, px := range s.File.Proxies {
		if px.Kubernetes == nil {
			continue
		}
		cfg := kubeConfig(ws.Dir, px.Kubernetes, nil, nil)
		svcs, err := kubernetes.CleanLanes(ctx, cfg)
		for _, s := range svcs {
			removed = append(removed, "lane router of Service "+s+" (selector restored)")
		}
		if err != nil {
			return removed, err
		}
		r, err := kubernetes.Clean(ctx, cfg, all)
		if err != nil {
			return removed, err
		}
		removed = append(removed, r...)
	}
	return removed, nil
}
