package e2e

import (
	"context"
	"fmt"
	"os"
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
	ctx := ctxT(t)
	// A user without any role in namespace dev: a service account's token.
	if _, err := e.tb.Run(ctx, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: tether-noperm, namespace: dev}\n", "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.tb.Run(context.Background(), "", "-n", k8sNS, "delete", "serviceaccount", "tether-noperm", "--ignore-not-found")
	})
	token, err := e.tb.Run(ctx, "", "-n", k8sNS, "create", "token", "tether-noperm", "--duration", "1h")
	if err != nil {
		t.Fatal(err)
	}
	noperm := writeKubeconfig(t, e.tb.Kubeconfig, "noperm", func(c *clientcmdapi.Config) {
		for _, a := range c.AuthInfos {
			a.ClientCertificate, a.ClientKey, a.ClientCertificateData, a.ClientKeyData = "", "", nil, nil
			a.Token = strings.TrimSpace(token)
		}
	})
	unreachable := writeKubeconfig(t, e.tb.Kubeconfig, "unreachable", func(c *clientcmdapi.Config) {
		for _, cl := range c.Clusters {
			cl.Server = "https://127.0.0.1:1"
		}
	})
	ws := t.TempDir()
	yaml := fmt.Sprintf(`version: 1
proxies:
  - name: cluster
    kubernetes: {kubeconfig: %[1]s, namespace: %[2]s}
  - name: wrong-context
    kubernetes: {kubeconfig: %[1]s, context: nosuch, namespace: %[2]s}
  - name: no-namespace
    kubernetes: {kubeconfig: %[1]s, namespace: nosuch-ns}
  - name: no-permission
    kubernetes: {kubeconfig: %[3]s, namespace: %[2]s}
  - name: unreachable
    kubernetes: {kubeconfig: %[4]s, namespace: %[2]s}
  - name: no-image
    kubernetes: {kubeconfig: %[1]s, namespace: %[2]s, image: "tether/nosuch:local"}
`, e.tb.Kubeconfig, k8sNS, noperm, unreachable)
	if err := os.WriteFile(filepath.Join(ws, "tether.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
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
	ctx := ctxT(t)
	if _, err := e.tb.Run(ctx, `
apiVersion: v1
kind: ServiceAccount
metadata: {name: tether-nojobs, namespace: dev}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: tether-nojobs, namespace: dev}
rules:
- {apiGroups: [""], resources: [pods], verbs: [create, get, list, delete]}
- {apiGroups: [""], resources: [pods/portforward], verbs: [create]}
- {apiGroups: [""], resources: [events], verbs: [list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: tether-nojobs, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: tether-nojobs}
subjects: [{kind: ServiceAccount, name: tether-nojobs, namespace: dev}]
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.tb.Run(context.Background(), "", "-n", k8sNS, "delete", "serviceaccount,role,rolebinding", "tether-nojobs", "--ignore-not-found")
	})
	token, err := e.tb.Run(ctx, "", "-n", k8sNS, "create", "token", "tether-nojobs", "--duration", "1h")
	if err != nil {
		t.Fatal(err)
	}
	kc := writeKubeconfig(t, e.tb.Kubeconfig, "nojobs", func(c *clientcmdapi.Config) {
		for _, a := range c.AuthInfos {
			a.ClientCertificate, a.ClientKey, a.ClientCertificateData, a.ClientKeyData = "", "", nil, nil
			a.Token = strings.TrimSpace(token)
		}
	})
	session := randSession("nojobs-")
	octx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tun, err := kubernetes.Open(octx, kubernetes.Config{Kubeconfig: kc, Namespace: k8sNS, Session: session})
	if err != nil {
		t.Fatal(err)
	}
	pods := e.sessionPods(t, session)
	if len(pods) != 1 {
		t.Fatalf("want one agent pod, got %d", len(pods))
	}
	if len(pods[0].OwnerReferences) != 0 {
		t.Errorf("want a bare agent pod, it has owners %v", pods[0].OwnerReferences)
	}
	c, err := tun.Dial(octx, "tcp", "orders.dev.svc.cluster.local:80")
	if err != nil {
		t.Fatal(err)
	}
	if body, err := httpGetVia(c, "orders"); err != nil || !strings.HasPrefix(body, "orders ") {
		t.Errorf("dial through the bare pod: %q %v", body, err)
	}
	if err := tun.Close(); err != nil {
		t.Error(err)
	}
	if left := e.sessionPods(t, session); len(left) != 0 {
		t.Errorf("after Close %d pods remain", len(left))
	}
	var steps []string
	kubernetes.Check(octx, kubernetes.Config{Kubeconfig: kc, Namespace: k8sNS}, "", func(name string, took time.Duration, err error, msg string) bool {
		steps = append(steps, fmt.Sprintf("%s %v %s", name, err, msg))
		if name == "permissions" && (err != nil || !strings.Contains(msg, "bare pod")) {
			t.Errorf("permissions step: %v %s", err, msg)
		}
		return err == nil
	})
	t.Logf("steps: %s", strings.Join(steps, "; "))
	if len(steps) != 5 || !strings.HasPrefix(steps[4], "dial <nil>") {
		t.Errorf("want five passing steps, got %v", steps)
	}
}
