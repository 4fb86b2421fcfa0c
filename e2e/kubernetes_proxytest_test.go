package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tether-dev/tether/plugins/kubernetes"
	"github.com/tether-dev/tether/protocol"
)

// writeKubeconfig writes a copy of the testbed's kubeconfig changed by edit.
func writeKubeconfig(t *testing.T, src, name string, edit func(*clientcmdapi.Config)) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(src)
	if err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	path := filepath.Join(t.TempDir(), name)
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestKubernetesProxyTest: proxy/test on kubernetes proxies runs real steps
// — kubeconfig, apiServer, permissions, image, dial — against the testbed;
// each broken setup fails at its step with a message saying what to do.
func TestKubernetesProxyTest(t *testing.T) {
	e := setupK8s(t)
	// A user without any role in namespace dev: a service account's token.
	noperm := e.serviceAccountKubeconfig(t, "tether-noperm", "")
	unreachable := writeKubeconfig(t, e.tb.Kubeconfig, "unreachable", func(c *clientcmdapi.Config) {
		for _, cl := range c.Clusters {
			cl.Server = "https://127.0.0.1:1"
		}
	})
	ws := e.workspace(t, k8sNS, "", fmt.Sprintf(`  - name: wrong-context
    kubernetes: {kubeconfig: %[1]s, context: nosuch, namespace: %[2]s}
  - name: no-namespace
    kubernetes: {kubeconfig: %[1]s, namespace: nosuch-ns}
  - name: no-permission
    kubernetes: {kubeconfig: %[3]s, namespace: %[2]s}
  - name: unreachable
    kubernetes: {kubeconfig: %[4]s, namespace: %[2]s}
  - name: no-image
    kubernetes: {kubeconfig: %[1]s, namespace: %[2]s, image: "tether/nosuch:local"}
`, e.tb.Kubeconfig, k8sNS, noperm, unreachable))
	p := startServe(t, "--workspace", ws)
	initialize(t, p.Client, map[string]any{})
	for _, tc := range []struct {
		proxy, failStep, says string
	}{
		{"cluster", "", ""},
		{"wrong-context", "kubeconfig", `no context "nosuch": set context in the proxy to one of tether-testbed`},
		{"no-namespace", "permissions", "namespace nosuch-ns does not exist"},
		{"no-permission", "permissions", "not allowed in namespace dev: get pods, delete pods, create pods/portforward"},
		{"unreachable", "apiServer", "is unreachable"},
		{"no-image", "image", "tether/nosuch:local is on none of the"},
	} {
		start := time.Now()
		var res protocol.ProxyTestResult
		if err := p.Call(ctxT(t), "proxy/test", map[string]any{"name": tc.proxy}, &res); err != nil {
			t.Fatalf("%s: %v", tc.proxy, err)
		}
		var names []string
		for _, s := range res.Steps {
			names = append(names, s.Name)
			t.Logf("%s: %s ok=%v %dms: %s", tc.proxy, s.Name, s.OK, s.DurationMs, s.Message)
		}
		t.Logf("%s: proxy/test took %v", tc.proxy, time.Since(start).Round(time.Millisecond))
		last := res.Steps[len(res.Steps)-1]
		if tc.failStep == "" {
			if !res.OK || strings.Join(names, ",") != "kubeconfig,apiServer,permissions,image,dial" {
				t.Errorf("%s: want every step ok, got %+v", tc.proxy, res)
			}
			continue
		}
		if res.OK || last.OK || last.Name != tc.failStep || !strings.Contains(last.Message, tc.says) {
			t.Errorf("%s: want step %s failing with %q, got %+v", tc.proxy, tc.failStep, tc.says, res)
		}
	}
	// The test's agent pod is gone with the test.
	if left := e.sessionPodsOf(t, "tether.dev/owner-pid="+fmt.Sprint(p.cmd.Process.Pid)); len(left) > 0 {
		t.Errorf("proxy/test left %d agent pods", len(left))
	}
}

// serviceAccountKubeconfig creates the service account name in namespace dev
// (with rules: a Role of these rules, bound to it) and returns a copy of the
// testbed's kubeconfig that signs in with its token. Cleanup deletes them.
func (e *k8sEnv) serviceAccountKubeconfig(t *testing.T, name, rules string) string {
	t.Helper()
	ctx := ctxT(t)
	objects := fmt.Sprintf("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: %s, namespace: %s}\n", name, k8sNS)
	kinds := "serviceaccount"
	if rules != "" {
		objects += fmt.Sprintf(`---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: %[1]s, namespace: %[2]s}
rules:%[3]s---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: %[1]s, namespace: %[2]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: %[1]s}
subjects: [{kind: ServiceAccount, name: %[1]s, namespace: %[2]s}]
`, name, k8sNS, rules)
		kinds = "serviceaccount,role,rolebinding"
	}
	if _, err := e.tb.Run(ctx, objects, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.tb.Run(context.Background(), "", "-n", k8sNS, "delete", kinds, name, "--ignore-not-found")
	})
	token, err := e.tb.Run(ctx, "", "-n", k8sNS, "create", "token", name, "--duration", "1h")
	if err != nil {
		t.Fatal(err)
	}
	return writeKubeconfig(t, e.tb.Kubeconfig, name, func(c *clientcmdapi.Config) {
		for _, a := range c.AuthInfos {
			a.ClientCertificate, a.ClientKey, a.ClientCertificateData, a.ClientKeyData = "", "", nil, nil
			a.Token = strings.TrimSpace(token)
		}
	})
}

func (e *k8sEnv) sessionPodsOf(t *testing.T, selector string) []string {
	t.Helper()
	l, err := e.cs.CoreV1().Pods(k8sNS).List(ctxT(t), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range l.Items {
		out = append(out, p.Name)
	}
	return out
}

// TestKubernetesBarePodWithoutJobs: a user who may create pods but not Jobs
// still gets a tunnel (the agent is a bare pod), proxy/test says so, and
// Close removes the pod.
func TestKubernetesBarePodWithoutJobs(t *testing.T) {
	e := setupK8s(t)
	steps := e.restrictedUserTunnel(t, "tether-nojobs", `
- {apiGroups: [""], resources: [pods], verbs: [create, get, list, delete]}
- {apiGroups: [""], resources: [pods/portforward], verbs: [create]}
- {apiGroups: [""], resources: [events], verbs: [list]}
`, func(tun *kubernetes.Tunnel, session string) {
		if p := tun.Protocol(); p != "spdy" {
			t.Errorf("port-forward protocol %q, want spdy (the default)", p)
		}
		pods := e.sessionPods(t, session)
		if len(pods) != 1 {
			t.Fatalf("want one agent pod, got %d", len(pods))
		}
		if len(pods[0].OwnerReferences) != 0 {
			t.Errorf("want a bare agent pod, it has owners %v", pods[0].OwnerReferences)
		}
	})
	if len(steps) != 5 || !strings.HasPrefix(steps[4], "dial <nil>") || !strings.Contains(steps[2], "bare pod") {
		t.Errorf("want five passing steps, permissions saying bare pod; got %v", steps)
	}
}

// TestKubernetesWebSocketWhenSPDYRefused: a user granted only get on
// pods/portforward (WebSocket port-forward; SPDY's POST is forbidden) gets
// a working tunnel over WebSocket: the SPDY refusal is not the user's
// problem.
func TestKubernetesWebSocketWhenSPDYRefused(t *testing.T) {
	e := setupK8s(t)
	steps := e.restrictedUserTunnel(t, "tether-wsonly", `
- {apiGroups: [""], resources: [pods], verbs: [create, get, list, delete]}
- {apiGroups: [""], resources: [pods/portforward], verbs: [get]}
- {apiGroups: [""], resources: [events], verbs: [list]}
`, func(tun *kubernetes.Tunnel, session string) {
		if p := tun.Protocol(); p != "websocket" {
			t.Errorf("port-forward protocol %q, want websocket (SPDY is forbidden)", p)
		}
		if a := tun.DataAgent(); a == "" {
			t.Error("the streams do not take the data port")
		}
	})
	if len(steps) != 5 || !strings.HasPrefix(steps[4], "dial <nil>") || !strings.Contains(steps[4], "over websocket") {
		t.Errorf("want five passing steps, the dial over websocket; got %v", steps)
	}
}

// restrictedUserTunnel opens a tunnel as a service account with rules,
// shows it to inspect, dials the orders Service through it, closes it
// (checking that no pod remains) and returns the proxy/test steps of that
// user ("name err message").
func (e *k8sEnv) restrictedUserTunnel(t *testing.T, name, rules string, inspect func(tun *kubernetes.Tunnel, session string)) []string {
	t.Helper()
	kc := e.serviceAccountKubeconfig(t, name, rules)
	session := randSession(name + "-")
	octx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tun, err := kubernetes.Open(octx, kubernetes.Config{Kubeconfig: kc, Namespace: k8sNS, Session: session})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tun.Close() })
	c, err := tun.Dial(octx, "tcp", "orders.dev.svc.cluster.local:80")
	if err != nil {
		t.Fatal(err)
	}
	if body, err := httpGetVia(c, "orders"); err != nil || !strings.HasPrefix(body, "orders ") {
		t.Errorf("dial through the agent: %q %v", body, err)
	}
	inspect(tun, session)
	if err := tun.Close(); err != nil {
		t.Error(err)
	}
	if left := e.sessionPods(t, session); len(left) != 0 {
		t.Errorf("after Close %d pods remain", len(left))
	}
	var steps []string
	kubernetes.Check(octx, kubernetes.Config{Kubeconfig: kc, Namespace: k8sNS}, "", func(name string, took time.Duration, err error, msg string) bool {
		steps = append(steps, fmt.Sprintf("%s %v %s", name, err, msg))
		return err == nil
	})
	t.Logf("steps: %s", strings.Join(steps, "; "))
	return steps
}
