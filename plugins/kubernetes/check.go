package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	authv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"

	"github.com/tether-dev/tether/internal/errcat"
)

// DefaultCheckTarget is what Check dials through the agent when no target
// is given: the API server's Service, as the cluster's own DNS names it.
const DefaultCheckTarget = "kubernetes.default.svc:443"

// StepFunc records one step of Check: its name, how long it took, and err
// (nil: passed, with msg saying what was found). It returns whether to go on.
type StepFunc func(name string, took time.Duration, err error, msg string) bool

// Check tests a kubernetes proxy step by step, as the tunnel will use it:
// "kubeconfig" (file and context load), "apiServer" (reachable, its
// version), "permissions" (the namespace exists and the user may create the
// agent and port-forward to it), "image" (the agent image is on a node, when
// that can be seen), "dial" (start the agent and dial target through it).
// It stops at the first failing step; each failure says what to do.
func Check(ctx context.Context, cfg Config, target string, step StepFunc) {
	cfg.defaults()
	if target == "" {
		target = DefaultCheckTarget
	}
	start := time.Now()
	cc := loader(cfg.Kubeconfig, cfg.Context)
	raw, err := cc.RawConfig()
	ctxName := cfg.Context
	if err == nil && ctxName == "" {
		ctxName = raw.CurrentContext
	}
	var names []string
	for n := range raw.Contexts {
		names = append(names, n)
	}
	sort.Strings(names)
	switch {
	case err != nil:
		err = fmt.Errorf("cannot read the kubeconfig: %v (fix the file, or set kubeconfig in the proxy / $KUBECONFIG)", err)
	case len(raw.Contexts) == 0:
		err = errors.New("no kubeconfig found, or it has no contexts (set kubeconfig in the proxy, $KUBECONFIG, or create ~/.kube/config, e.g. with your cloud's CLI)")
	case ctxName == "":
		err = fmt.Errorf("the kubeconfig has no current context: set context in the proxy to one of %s", strings.Join(names, ", "))
	case raw.Contexts[ctxName] == nil:
		err = fmt.Errorf("the kubeconfig has no context %q: set context in the proxy to one of %s", ctxName, strings.Join(names, ", "))
	}
	if err != nil {
		step("kubeconfig", time.Since(start), err, "")
		return
	}
	c, err := connect(cfg)
	if err != nil {
		step("kubeconfig", time.Since(start), fmt.Errorf("%v (fix the context %q in the kubeconfig)", err, ctxName), "")
		return
	}
	if !step("kubeconfig", time.Since(start), nil, fmt.Sprintf("context %s, API server %s, namespace %s", ctxName, c.rest.Host, c.namespace)) {
		return
	}

	start = time.Now()
	vctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	var v version.Info
	raw2, err := c.client.Discovery().RESTClient().Get().AbsPath("/version").Do(vctx).Raw()
	cancel()
	if err == nil {
		err = json.Unmarshal(raw2, &v)
	}
	if err != nil {
		switch {
		case apierrors.IsUnauthorized(err):
			err = fmt.Errorf("the API server %s rejected the credentials of context %s: log in again or refresh the kubeconfig (%v)", c.rest.Host, ctxName, err)
		default:
			err = fmt.Errorf("the API server %s is unreachable: %v (check the VPN, that the cluster runs, and the server address in the kubeconfig)", c.rest.Host, err)
		}
		step("apiServer", time.Since(start), err, "")
		return
	}
	if !step("apiServer", time.Since(start), nil, fmt.Sprintf("reached %s: Kubernetes %s", c.rest.Host, v.GitVersion)) {
		return
	}

	start = time.Now()
	msg, err := c.checkPermissions(ctx, websocketNeedsOnlyGet(v))
	if !step("permissions", time.Since(start), err, msg) {
		return
	}

	start = time.Now()
	msg, err = c.checkImage(ctx, &cfg)
	if !step("image", time.Since(start), err, msg) {
		return
	}

	start = time.Now()
	octx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout+30*time.Second)
	defer cancel()
	t, err := Open(octx, cfg)
	if err != nil {
		step("dial", time.Since(start), fmt.Errorf("starting the agent pod: %v", err), "")
		return
	}
	defer t.Close()
	dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
	conn, err := t.Dial(dctx, "tcp", target)
	dcancel()
	if err != nil {
		step("dial", time.Since(start), fmt.Errorf("the agent pod runs but could not reach %s: %v (check the target, and NetworkPolicies that limit egress in namespace %s)", target, err, c.namespace), "")
		return
	}
	conn.Close()
	_, pod := t.Pod()
	step("dial", time.Since(start), nil, fmt.Sprintf("agent pod %s/%s reached %s (port-forward over %s)", c.namespace, pod, target, t.Protocol()))
}

// access is one permission the tunnel needs.
type access struct {
	verb, group, resource, sub string
}

func (a access) String() string {
	r := a.resource
	if a.sub != "" {
		r += "/" + a.sub
	}
	if a.group != "" {
		r += "." + a.group
	}
	return a.verb + " " + r
}

// checkPermissions: the namespace exists (when that may be read) and the
// user may run the agent there (SelfSubjectAccessReview).
func (c *cluster) checkPermissions(ctx context.Context, getForwards bool) (string, error) {
	if _, err := c.client.CoreV1().Namespaces().Get(ctx, c.namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return "", errcat.Config.Newf("namespace %s does not exist: set namespace in the proxy to an existing one, or ask for it to be created", c.namespace)
	}
	allowed := func(a access) (bool, error) {
		r, err := c.client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authv1.SelfSubjectAccessReview{
			Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authv1.ResourceAttributes{
				Namespace: c.namespace, Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.sub}},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return r.Status.Allowed, nil
	}
	var missing []string
	for _, a := range []access{{"get", "", "pods", ""}, {"delete", "", "pods", ""}, {"create", "", "pods", "portforward"}} {
		ok, err := allowed(a)
		if err != nil {
			return "", errcat.Of(explain(err)).Newf("cannot check permissions in namespace %s: %v", c.namespace, explain(err))
		}
		if !ok && a.sub == "portforward" && getForwards {
			// get is enough for WebSocket port-forward (SPDY needs create)
			// before Kubernetes 1.35, which asks create for both.
			ok, _ = allowed(access{"get", "", "pods", "portforward"})
		}
		if !ok {
			missing = append(missing, a.String())
		}
	}
	jobs, err := allowed(access{"create", "batch", "jobs", ""})
	if err != nil {
		return "", explain(err)
	}
	if jobs {
		if ok, _ := allowed(access{"delete", "batch", "jobs", ""}); !ok {
			missing = append(missing, "delete jobs.batch")
		}
	} else if ok, _ := allowed(access{"create", "", "pods", ""}); !ok {
		missing = append(missing, "create jobs.batch (or create pods)")
	}
	if len(missing) > 0 {
		return "", errcat.Config.Newf("not allowed in namespace %s: %s. Ask the cluster admin for a Role with these verbs in that namespace (docs/kubernetes.md lists it), or use a namespace where you have them",
			c.namespace, strings.Join(missing, ", "))
	}
	if !jobs {
		return fmt.Sprintf("may run the agent in namespace %s as a bare pod (Jobs are not allowed: a crashed session's pod stays until the next tether run)", c.namespace), nil
	}
	return fmt.Sprintf("may run the agent (Job) in namespace %s and port-forward to it", c.namespace), nil
}

// checkImage looks for the agent image in the nodes' image lists. The
// kubelet reports only the 50 largest images of a node and listing nodes
// needs a cluster-wide permission, so "not seen" is not proof of absence.
func (c *cluster) checkImage(ctx context.Context, cfg *Config) (string, error) {
	nodes, err := c.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Sprintf("image %s: cannot be checked before the pod is scheduled (no permission to list nodes); the dial step starts the agent and names image errors", cfg.Image), nil
	}
	want := normalizeImage(cfg.Image)
	var on []string
	for _, n := range nodes.Items {
		for _, img := range n.Status.Images {
			for _, name := range img.Names {
				if normalizeImage(name) == want {
					on = append(on, n.Name)
				}
			}
		}
	}
	if len(on) > 0 {
		return fmt.Sprintf("image %s is on node(s) %s", cfg.Image, strings.Join(dedup(on), ", ")), nil
	}
	if cfg.ImagePullPolicy == "Never" {
		return "", errcat.Environment.Newf("image %s is on none of the %d node(s) and may not be pulled: load it on the nodes (make agent-image, then import it) or push it to a registry and set the proxy's image", cfg.Image, len(nodes.Items))
	}
	if !strings.Contains(strings.SplitN(cfg.Image, "/", 2)[0], ".") && strings.HasSuffix(cfg.Image, ":local") {
		return "", errcat.Environment.Newf("image %s is on none of the %d node(s) and is a local build that no registry serves: load it on the nodes, or push the agent image to a registry the cluster pulls from and set the proxy's image", cfg.Image, len(nodes.Items))
	}
	return fmt.Sprintf("image %s is not on the nodes yet: it will be pulled (a pull failure shows in the dial step)", cfg.Image), nil
}

// normalizeImage: "tether/agent:local" and "docker.io/tether/agent:local"
// are the same image.
func normalizeImage(s string) string {
	s = strings.TrimPrefix(s, "docker.io/")
	s = strings.TrimPrefix(s, "library/")
	if !strings.Contains(s[strings.LastIndexByte(s, '/')+1:], ":") && !strings.Contains(s, "@") {
		s += ":latest"
	}
	return s
}

func dedup(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// websocketNeedsOnlyGet: an API server of version v authorises a WebSocket
// port-forward with get on pods/portforward (before 1.35; from 1.35 the
// feature gate AuthorizePodWebsocketUpgradeCreatePermission, on by
// default, asks create as for SPDY). An unknown version counts as new.
func websocketNeedsOnlyGet(v version.Info) bool {
	major, _ := strconv.Atoi(strings.TrimRight(v.Major, "+"))
	minor, _ := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
	return major == 1 && minor > 0 && minor < 35
}
