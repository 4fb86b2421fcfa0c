package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/proxy"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tether-dev/tether/channel"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/internal/k8stestbed"
	"github.com/tether-dev/tether/internal/routes"
	"github.com/tether-dev/tether/plugins/docker"
	"github.com/tether-dev/tether/plugins/kubernetes"
	"github.com/tether-dev/tether/tunnel"
)

const k8sNS = "dev"

// k8sEnv is the testbed with the agent and echo images loaded and an
// "orders" pod + Service in namespace dev.
type k8sEnv struct {
	tb        *k8stestbed.Testbed
	cs        k8s.Interface
	podIP     string // the orders pod
	clusterIP string // the orders Service
	tmp       string
}

var (
	k8sOnce sync.Once
	k8sE    *k8sEnv
	k8sErr  error
)

func setupK8s(t testing.TB) *k8sEnv {
	t.Helper()
	tb := k8stestbed.Start(t)
	k8sOnce.Do(func() { k8sE, k8sErr = prepareK8s(t, tb) })
	if k8sErr != nil {
		t.Fatal(k8sErr)
	}
	return k8sE
}

func prepareK8s(t testing.TB, tb *k8stestbed.Testbed) (*k8sEnv, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t0 := time.Now()
	tmp, err := os.MkdirTemp("", "tether-k8s-e2e-")
	if err != nil {
		return nil, err
	}
	if _, err := loadTestImages(ctx, tb, tmp, kubernetes.DefaultImage, "tether/echo:test"); err != nil {
		return nil, err
	}
	t.Logf("images built and loaded in %v", time.Since(t0).Round(100*time.Millisecond))
	if _, err := tb.Run(ctx, `
apiVersion: v1
kind: Namespace
metadata: {name: dev}
---
apiVersion: v1
kind: Pod
metadata: {name: orders, namespace: dev, labels: {app: orders}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: echo
    image: tether/echo:test
    imagePullPolicy: Never
    ports: [{containerPort: 8080}]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: dev}
spec:
  selector: {app: orders}
  ports: [{port: 80, targetPort: 8080}]
`, "apply", "-f", "-"); err != nil {
		return nil, err
	}
	if _, err := tb.Run(ctx, "", "-n", k8sNS, "wait", "--for=condition=Ready", "pod/orders", "--timeout=90s"); err != nil {
		return nil, err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", tb.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := k8s.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	p, err := cs.CoreV1().Pods(k8sNS).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	s, err := cs.CoreV1().Services(k8sNS).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return &k8sEnv{tb: tb, cs: cs, podIP: p.Status.PodIP, clusterIP: s.Spec.ClusterIP, tmp: tmp}, nil
}

// loadTestImages builds the agent image from agentBin and an image of the
// echoserver (built into dir; its path is returned), tagged agentImage and
// echoImage, and loads both into the testbed.
func loadTestImages(ctx context.Context, tb *k8stestbed.Testbed, dir, agentImage, echoImage string) (string, error) {
	d, err := docker.New(ctx)
	if err != nil {
		return "", err
	}
	defer d.Close()
	if err := d.BuildAgentImage(ctx, agentBin, agentImage); err != nil {
		return "", err
	}
	echo, err := k8stestbed.BuildEchoServer(ctx, dir)
	if err != nil {
		return "", err
	}
	if err := k8stestbed.BuildStaticImage(ctx, echoImage, echo); err != nil {
		return "", err
	}
	return echo, tb.LoadImages(ctx, agentImage, echoImage)
}

// workspace writes a workspace whose tether.yaml has the proxy "cluster":
// the testbed, namespace ns and the further fields of proxyFields (", image:
// x"), followed by rest (more proxies, or the configurations).
func (e *k8sEnv) workspace(t testing.TB, ns, proxyFields, rest string) string {
	t.Helper()
	ws := t.TempDir()
	yaml := fmt.Sprintf("version: 1\nproxies:\n  - name: cluster\n    kubernetes: {kubeconfig: %s, namespace: %s%s}\n%s",
		e.tb.Kubeconfig, ns, proxyFields, rest)
	if err := os.WriteFile(filepath.Join(ws, "tether.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return ws
}

func randSession(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// httpGetVia sends GET / over conn and returns the body's first line.
func httpGetVia(conn net.Conn, host string) (string, error) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

func (e *k8sEnv) sessionPods(t *testing.T, session string) []corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := e.cs.CoreV1().Pods(k8sNS).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelSession + "=" + session})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func TestKubernetesTunnel(t *testing.T) {
	e := setupK8s(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	session := randSession("e2e-")
	var plog sync.Mutex
	cfg := kubernetes.Config{Kubeconfig: e.tb.Kubeconfig, Namespace: k8sNS, Session: session,
		Progress: func(s string) { plog.Lock(); t.Logf("progress: %s", s); plog.Unlock() }}

	t0 := time.Now()
	tun, err := kubernetes.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	c, err := tun.Dial(ctx, "tcp", net.JoinHostPort(e.podIP, "8080"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := httpGetVia(c, e.podIP)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BENCH toggle -> first byte through the pod: %v (port-forward protocol %s)", time.Since(t0).Round(time.Millisecond), tun.Protocol())
	agentIP := tun.PodIP()
	if !strings.Contains(body, agentIP+":") {
		t.Fatalf("answer %q does not come from the agent pod %s", body, agentIP)
	}

	for _, target := range []string{
		"orders.dev.svc.cluster.local:80", // cluster DNS name
		"orders.dev:80",                   // short name, through the pod's search path
		net.JoinHostPort(e.clusterIP, "80"),
		net.JoinHostPort(e.podIP, "8080"),
	} {
		c, err := tun.Dial(ctx, "tcp", target)
		if err != nil {
			t.Errorf("dial %s: %v", target, err)
			continue
		}
		body, err := httpGetVia(c, target)
		// Through a Service, kube-proxy (--masquerade-all in the testbed)
		// rewrites the source; a pod IP shows the agent pod's address.
		viaPod := strings.HasPrefix(target, e.podIP)
		if err != nil || !strings.HasPrefix(body, "orders ") || (viaPod && !strings.Contains(body, agentIP+":")) {
			t.Errorf("%s: %q, %v", target, body, err)
		} else {
			t.Logf("%s -> %s", target, body)
		}
	}
	if _, err := tun.Dial(ctx, "tcp", "nosuch.dev.svc.cluster.local:80"); tunnel.ReasonOf(err) != tunnel.NoSuchHost {
		t.Errorf("unknown name: %v (reason %s)", err, tunnel.ReasonOf(err))
	} else {
		t.Logf("unknown name: %v", err)
	}

	// The app's path: the channel (SOCKS5 on loopback) with the default routes.
	cidrs, domains, err := kubernetes.DefaultRoutes(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("default routes: cidrs %v domains %v", cidrs, domains)
	routes, err := routes.Parse(cidrs, domains)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{e.podIP, e.clusterIP, "orders.dev.svc.cluster.local", "orders.dev"} {
		if !routes.Match(h) {
			t.Errorf("default routes do not cover %s", h)
		}
	}
	ch, err := channel.Start(ctx, channel.Config{Tunnel: tun, Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	sd, err := proxy.SOCKS5("tcp", ch.SOCKSAddr(), &proxy.Auth{User: ch.Username(), Password: ch.Password()}, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: sd.(proxy.ContextDialer).DialContext}}
	for _, u := range []string{"http://orders.dev.svc.cluster.local/", "http://orders.dev/", "http://" + e.clusterIP + "/", "http://" + e.podIP + ":8080/"} {
		resp, err := hc.Get(u)
		if err != nil {
			t.Errorf("through the channel: %s: %v", u, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(b), "orders ") || (strings.Contains(u, e.podIP) && !strings.Contains(string(b), agentIP+":")) {
			t.Errorf("through the channel: %s: %q not from the agent pod", u, b)
		}
	}

	// Pod hygiene.
	pods := e.sessionPods(t, session)
	if len(pods) != 1 {
		t.Fatalf("%d pods with session %s, want 1", len(pods), session)
	}
	checkHygiene(t, &pods[0])

	// Reconnect: delete the pod; the tunnel notices, replaces it, and dials
	// work again without a new Open.
	events := make(chan tunnel.Event, 16)
	unwatch := tun.Watch(func(ev tunnel.Event) {
		select {
		case events <- ev:
		default:
		}
	})
	defer unwatch()
	old := pods[0].Name
	td := time.Now()
	if err := e.cs.CoreV1().Pods(k8sNS).Delete(ctx, old, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var noticed time.Duration
	deadline := time.After(10 * time.Second)
wait:
	for {
		select {
		case ev := <-events:
			if ev.State == tunnel.Reconnecting {
				noticed = time.Since(td)
				break wait
			}
		case <-deadline:
			break wait
		}
	}
	if noticed == 0 || noticed > 20*time.Second {
		t.Errorf("pod deletion noticed after %v (want <= 20s; typically under 2s)", noticed)
	}
	var back time.Duration
	for time.Since(td) < 60*time.Second {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := tun.Dial(dctx, "tcp", "orders.dev.svc.cluster.local:80")
		dcancel()
		if err == nil {
			if body, err := httpGetVia(c, "orders"); err == nil && strings.HasPrefix(body, "orders ") {
				back = time.Since(td)
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if back == 0 {
		t.Fatalf("no working dial within 60s after the pod was deleted")
	}
	_, newPod := tun.Pod()
	t.Logf("BENCH pod deleted -> noticed %v -> dials work again %v (new pod %s, old %s)", noticed.Round(time.Millisecond), back.Round(time.Millisecond), newPod, old)
	if newPod == old || newPod == "" {
		t.Errorf("pod not replaced: %q", newPod)
	}

	// Close deletes the pod.
	if err := tun.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if left := e.sessionPods(t, session); len(left) != 0 {
		t.Errorf("after Close %d pods of the session remain: %s", len(left), left[0].Name)
	}
}

func checkHygiene(t *testing.T, p *corev1.Pod) {
	t.Helper()
	s := p.Spec
	if s.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %s", s.RestartPolicy)
	}
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		t.Errorf("service account token mounted")
	}
	c := s.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("root filesystem not read-only")
	}
	if s.SecurityContext == nil || s.SecurityContext.RunAsNonRoot == nil || !*s.SecurityContext.RunAsNonRoot || s.SecurityContext.RunAsUser == nil || *s.SecurityContext.RunAsUser == 0 {
		t.Errorf("not non-root")
	}
	if m := c.Resources.Limits.Memory(); m.IsZero() || m.Value() > 128<<20 {
		t.Errorf("memory limit %v", m)
	}
	for _, v := range s.Volumes {
		if v.Projected != nil {
			t.Errorf("projected volume %s (service account token?)", v.Name)
		}
	}
	for _, l := range []string{kubernetes.LabelManagedBy, kubernetes.LabelSession, kubernetes.LabelOwnerUser, kubernetes.LabelOwnerHost, kubernetes.LabelOwnerPID} {
		if p.Labels[l] == "" {
			t.Errorf("label %s missing", l)
		}
	}
	if p.Labels[kubernetes.LabelManagedBy] != "tether" {
		t.Errorf("managed-by %q", p.Labels[kubernetes.LabelManagedBy])
	}
	if !strings.Contains(strings.Join(c.Args, " "), "--idle-exit 1m0s") {
		t.Errorf("agent args %v: no 60s idle exit", c.Args)
	}
}

// TestKubernetesCrashAndClean: the process holding the tunnel is killed; the
// agent exits after its idle time; Clean removes that pod of ours and leaves
// another owner's pod alone.
func TestKubernetesCrashAndClean(t *testing.T) {
	e := setupK8s(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	holder := filepath.Join(e.tmp, "holdtunnel")
	build := exec.CommandContext(ctx, "go", "build", "-o", holder, "../internal/k8stestbed/holdtunnel")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build holdtunnel: %v: %s", err, out)
	}
	// Another developer's pods (other user/host labels): one finished, one running.
	other := `
apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: dev
  labels: {app.kubernetes.io/managed-by: tether, tether.dev/session: other, tether.dev/owner-user: someone-else, tether.dev/owner-host: their-laptop, tether.dev/owner-pid: "1"}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  containers: [{name: agent, image: AGENT_IMAGE, imagePullPolicy: Never, args: [%s]}]
`
	other = strings.ReplaceAll(other, "AGENT_IMAGE", kubernetes.DefaultImage)
	if _, err := e.tb.Run(ctx, fmt.Sprintf(other, "other-finished", "version")+"---"+fmt.Sprintf(other, "other-running", `ssh, --authorized-keys, /nonexistent`), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	defer e.tb.Run(context.Background(), "", "-n", k8sNS, "delete", "pod", "other-finished", "other-running", "--grace-period=0", "--force", "--ignore-not-found")

	session := randSession("crash-")
	const idle = 5 * time.Second
	cmd := exec.Command(holder, "-kubeconfig", e.tb.Kubeconfig, "-namespace", k8sNS, "-idle-exit", idle.String(), "-session", session)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "POD ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("holdtunnel: %q %v", line, err)
	}
	pod := strings.TrimSpace(strings.TrimPrefix(line, "POD "))
	pod = pod[strings.IndexByte(pod, '/')+1:]
	t.Logf("holder %d has pod %s", cmd.Process.Pid, pod)
	time.Sleep(idle + time.Second) // connected: the agent must not idle-exit
	if p, err := e.cs.CoreV1().Pods(k8sNS).Get(ctx, pod, metav1.GetOptions{}); err != nil || p.Status.Phase != corev1.PodRunning {
		t.Fatalf("pod with a connected client: %v %v", err, p.Status.Phase)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	tk := time.Now()
	var exited time.Duration
	for time.Since(tk) < idle+30*time.Second {
		p, err := e.cs.CoreV1().Pods(k8sNS).Get(ctx, pod, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed)) {
			exited = time.Since(tk)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if exited == 0 {
		t.Fatalf("agent pod %s still running %v after its client was killed (idle exit %v)", pod, idle+30*time.Second, idle)
	}
	t.Logf("client SIGKILLed -> agent pod finished after %v (idle exit %v)", exited.Round(100*time.Millisecond), idle)

	gone, err := kubernetes.Clean(ctx, kubernetes.Config{Kubeconfig: e.tb.Kubeconfig, Namespace: k8sNS}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Clean removed %v", gone)
	found := false
	for _, g := range gone {
		if g == k8sNS+"/"+pod {
			found = true
		}
		if strings.Contains(g, "other-") {
			t.Errorf("Clean removed another owner's pod %s", g)
		}
	}
	if !found {
		// The agent's Job (ttlSecondsAfterFinished: 0) may have taken it first.
		if _, err := e.cs.CoreV1().Pods(k8sNS).Get(ctx, pod, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Clean did not remove our finished pod %s (%v)", pod, err)
		} else {
			t.Logf("the cluster removed the finished pod %s itself (Job TTL)", pod)
		}
	}
	// Even "all" never touches another owner's pods.
	if gone, err := kubernetes.Clean(ctx, kubernetes.Config{Kubeconfig: e.tb.Kubeconfig, Namespace: k8sNS}, true); err != nil {
		t.Fatal(err)
	} else {
		for _, g := range gone {
			if strings.Contains(g, "other-") {
				t.Errorf("Clean(all) removed another owner's pod %s", g)
			}
		}
	}
	for _, n := range []string{"other-finished", "other-running"} {
		if _, err := e.cs.CoreV1().Pods(k8sNS).Get(ctx, n, metav1.GetOptions{}); err != nil {
			t.Errorf("another owner's pod %s: %v", n, err)
		}
	}
}

func TestKubernetesContextsNamespaces(t *testing.T) {
	e := setupK8s(t)
	ctxs, cur, err := kubernetes.Contexts(e.tb.Kubeconfig)
	if err != nil || cur != "tether-testbed" || len(ctxs) != 1 {
		t.Fatalf("contexts %v current %q: %v", ctxs, cur, err)
	}
	nss, err := kubernetes.Namespaces(ctxT(t), kubernetes.Config{Kubeconfig: e.tb.Kubeconfig})
	if err != nil || !strings.Contains(strings.Join(nss, ","), k8sNS) {
		t.Fatalf("namespaces %v: %v", nss, err)
	}
}

// TestKubernetesImageError: a missing image is a clear error, fast.
func TestKubernetesImageError(t *testing.T) {
	e := setupK8s(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := kubernetes.Open(ctx, kubernetes.Config{Kubeconfig: e.tb.Kubeconfig, Namespace: k8sNS,
		Image: "tether/nosuch:image", ImagePullPolicy: "Never", Session: randSession("img-")})
	if err == nil || !strings.Contains(err.Error(), "ErrImageNeverPull") {
		t.Fatalf("want an ErrImageNeverPull error, got %v", err)
	}
	if c := errcat.Of(err); c != errcat.Environment {
		t.Errorf("category %q, want environment", c)
	}
	t.Logf("missing image: %v", err)
}
