package handlers

import (
	"context"

	"github.com/tether-dev/tether/plugins/kubernetes"
	"github.com/tether-dev/tether/protocol"
)

func init() {
	register(protocol.MethodKubernetesContexts, Method{Handle: typed(kubernetesContexts)})
	register(protocol.MethodKubernetesNamespaces, Method{Async: true, Handle: typed(kubernetesNamespaces)})
}

func kubernetesContexts(ctx context.Context, env *Env, p *protocol.KubernetesContextsParams) (any, error) {
	contexts, current, err := kubernetes.Contexts(p.Kubeconfig)
	if err != nil {
		return nil, err // a config error: -32602
	}
	return protocol.KubernetesContextsResult{Contexts: nonNil(contexts), Current: current}, nil
}

func kubernetesNamespaces(ctx context.Context, env *Env, p *protocol.KubernetesNamespacesParams) (any, error) {
	ns, err := kubernetes.Namespaces(ctx, kubernetes.Config{Kubeconfig: p.Kubeconfig, Context: p.Context})
	if err != nil {
		return launchError[any](nil, err)
	}
	return protocol.KubernetesNamespacesResult{Namespaces: nonNil(ns)}, nil
}
