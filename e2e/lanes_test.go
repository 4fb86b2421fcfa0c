package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/agent"
	"github.com/tether-dev/tether/internal/syncbuf"
	"github.com/tether-dev/tether/plugins/kubernetes"
)

// Lanes run in their own namespace with their own image tags, so that other
// tests sharing the testbed (and their images) do not interfere.
const (
	laneNS         = "lanes-e2e"
	laneAgentImage = "tether/agent:lanes"
	laneEchoImage  = "tether/echo:lanes"
)

type laneEnv struct {
	*k8sEnv
	clusterIP string // the shop Service
	echoBin   string // local echoserver
	selector  string // the shop Service's selector before any lane
}

var (
	laneOnce sync.Once
	laneE    *laneEnv
	laneErr  error
)

func setupLanes(t testing.TB) *laneEnv {
	t.Helper()
	e := setupK8s(t)
	laneOnce.Do(func() { laneE, laneErr = prepareLanes(t, e) })
	if laneErr != nil {
		t.Fatal(laneErr)
	}
	return laneE
}

func prepareLanes(t testing.TB, e *k8sEnv) (*laneEnv, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "tether-lanes-e2e-")
	if err != nil {
		return nil, err
	}
	echo, err := loadTestImages(ctx, e.tb, dir, laneAgentImage, laneEchoImage)
	if err != nil {
		return nil, err
	}
	// A fresh namespace: base Deployment with 2 replicas, its Service, a
	// client pod.
	e.tb.Run(ctx, "", "delete", "namespace", laneNS, "--ignore-not-found", "--wait=true", "--timeout=90s")
	if _, err := e.tb.Run(ctx, fmt.Sprintf(`
apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop, namespace: %[1]s}
spec:
  replicas: 2
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 1
      containers:
      - name: echo
        image: %[2]s
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: shop, namespace: %[1]s}
spec:
  selector: {app: shop}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: %[1]s}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: %[2]s
    imagePullPolicy: Never
`, laneNS, laneEchoImage), "apply", "-f", "-"); err != nil {
		return nil, err
	}
	if _, err := e.tb.Run(ctx, "", "-n", laneNS, "rollout", "status", "deployment/shop", "--timeout=120s"); err != nil {
		return nil, err
	}
	if _, err := e.tb.Run(ctx, "", "-n", laneNS, "wait", "--for=condition=Ready", "pod/client", "--timeout=120s"); err != nil {
		return nil, err
	}
	s, err := e.cs.CoreV1().Services(laneNS).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return &laneEnv{k8sEnv: e, clusterIP: s.Spec.ClusterIP, echoBin: echo, selector: fmt.Sprint(s.Spec.Selector)}, nil
}

// laneWorkspace writes a workspace with one exec configuration per lane:
// the local echoserver answering with its lane's name.
func (e *laneEnv) laneWorkspace(t testing.TB, lanes ...string) (string, map[string]int) {
	t.Helper()
	ports := map[string]int{}
	cfg := "configurations:\n"
	for _, l := range lanes {
		ports[l] = freeTCPPort(t)
		cfg += fmt.Sprintf(`  - name: %[1]s
    type: exec
    exec: {command: [%[2]s, "127.0.0.1:%[3]d"]}
    env: {ECHO_NAME: %[1]s-laptop}
    interconnect:
      enabled: true
      proxy: cluster
      lane: {name: %[1]s, services: [{service: shop, port: 80, localPort: %[3]d}]}
`, l, e.echoBin, ports[l])
	}
	return e.workspace(t, laneNS, fmt.Sprintf(", image: %q", laneAgentImage), cfg), ports
}

func freeTCPPort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startLaneLaunch runs `tether launch NAME` in the background.
func startLaneLaunch(t testing.TB, ws, name string) (*exec.Cmd, *syncbuf.Buffer) {
	t.Helper()
	var out syncbuf.Buffer
	cmd := exec.Command(tetherBin, "launch", "--workspace", ws, name)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(90 * time.Second):
				cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("tether launch %s:\n%s", name, out.String())
		}
	})
	return cmd, &out
}

// clientGet runs the client pod's tiny curl.
func (e *laneEnv) clientGet(t testing.TB, headers ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"-n", laneNS, "exec", "client", "--", "/app", "get", "http://shop/"}, headers...)
	out, err := e.tb.Run(ctx, "", args...)
	if err != nil {
		t.Fatalf("client get %v: %v: %s", headers, err, out)
	}
	return strings.TrimSpace(out)
}

// hostGet sends one request to the shop Service from this machine (the
// node) and returns the answer's first word and the served-by header.
func (e *laneEnv) hostGet(c *http.Client, lane string) (string, string, error) {
	req, _ := http.NewRequest("GET", "http://"+e.clusterIP+"/", nil)
	if lane != "" {
		req.Header.Set(agent.LaneHeader, lane)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", "", fmt.Errorf("status %s", resp.Status)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "", "", fmt.Errorf("empty answer")
	}
	return f[0], resp.Header.Get(agent.LaneServedHeader), err
}

// waitAnswer polls until a request of lane gets an answer from want.
func (e *laneEnv) waitAnswer(t testing.TB, lane, want string, timeout time.Duration) time.Duration {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	t0 := time.Now()
	var last string
	for time.Since(t0) < timeout {
		who, _, err := e.hostGet(c, lane)
		if err == nil && strings.HasPrefix(who, want) {
			return time.Since(t0)
		}
		last = fmt.Sprint(who, err)
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("lane %q: no answer from %s after %v (last: %s)", lane, want, timeout, last)
	return 0
}

func (e *laneEnv) ourObjects(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sel := metav1.ListOptions{LabelSelector: kubernetes.LabelManagedBy + "=tether"}
	var out []string
	if l, err := e.cs.CoreV1().Pods(laneNS).List(ctx, sel); err == nil {
		for _, p := range l.Items {
			out = append(out, "pod/"+p.Name)
		}
	}
	if l, err := e.cs.CoreV1().Services(laneNS).List(ctx, sel); err == nil {
		for _, p := range l.Items {
			out = append(out, "service/"+p.Name)
		}
	}
	if l, err := e.cs.AppsV1().Deployments(laneNS).List(ctx, sel); err == nil {
		for _, p := range l.Items {
			out = append(out, "deployment/"+p.Name)
		}
	}
	return out
}

func (e *laneEnv) shopSelector(t testing.TB) (string, map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := e.cs.CoreV1().Services(laneNS).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(s.Spec.Selector), s.Annotations
}

// killLaneApp SIGKILLs the local echoserver of a lane (tether's child,
// orphaned when tether itself is SIGKILLed).
func killLaneApp(port int) {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if strings.Contains(string(cmd), "echoserver") && strings.Contains(string(cmd), "127.0.0.1:"+strconv.Itoa(port)) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// TestLanes is the acceptance test of docs/lanes.md: two developers on
// lanes alice and bob of a Service with two base replicas; a client pod
// gets the right answer for alice, bob, no lane and an unknown lane; one
// developer stops cleanly, the other is SIGKILLed, `tether clean` restores
// the Service and nothing of ours is left.
func TestLanes(t *testing.T) {
	e := setupLanes(t)
	ws, ports := e.laneWorkspace(t, "alice", "bob")
	t.Cleanup(func() {
		killLaneApp(ports["alice"])
		killLaneApp(ports["bob"])
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cfg := kubernetes.Config{Kubeconfig: e.tb.Kubeconfig, Namespace: laneNS}
		kubernetes.RestoreService(ctx, cfg, "shop") // whatever the test left
	})
	alice, aliceOut := startLaneLaunch(t, ws, "alice")
	bob, _ := startLaneLaunch(t, ws, "bob")
	took := e.waitAnswer(t, "alice", "alice-laptop", 3*time.Minute)
	t.Logf("alice's lane answers after %v", took.Round(time.Millisecond))
	e.waitAnswer(t, "bob", "bob-laptop", 3*time.Minute)

	sel, ann := e.shopSelector(t)
	if !strings.Contains(sel, kubernetes.LabelLaneRouter) || ann[kubernetes.AnnotationLaneSelector] == "" {
		t.Fatalf("Service not pointed at the router: selector %s annotations %v", sel, ann)
	}
	// The client pod, by cluster DNS name.
	for _, tc := range []struct {
		headers []string
		want    string
	}{
		{[]string{"X-Tether-Lane: alice"}, "alice-laptop"},
		{[]string{"X-Tether-Lane: bob"}, "bob-laptop"},
		{[]string{"Baggage: userId=1, tether-lane=bob"}, "bob-laptop"},
		{nil, "shop-"},
		{[]string{"X-Tether-Lane: carol"}, "shop-"},
	} {
		if got := e.clientGet(t, tc.headers...); !strings.HasPrefix(got, tc.want) {
			t.Errorf("client %v: got %q, want an answer from %s", tc.headers, got, tc.want)
		}
	}
	// Both base replicas keep serving untagged requests.
	seen := map[string]bool{}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		if who, _, err := e.hostGet(c, ""); err == nil {
			seen[who] = true
		}
	}
	if len(seen) != 2 {
		t.Errorf("untagged requests reached %v, want both base replicas", seen)
	}

	// alice stops cleanly: her requests go to base, bob's lane stays.
	alice.Process.Signal(syscall.SIGTERM)
	if err := alice.Wait(); err != nil {
		t.Logf("tether launch alice: %v", err)
	}
	if who := e.clientGet(t, "X-Tether-Lane: alice"); !strings.HasPrefix(who, "shop-") {
		t.Errorf("after alice stopped: %q", who)
	}
	if who := e.clientGet(t, "X-Tether-Lane: bob"); !strings.HasPrefix(who, "bob-laptop") {
		t.Errorf("bob after alice stopped: %q", who)
	}
	if sel, _ := e.shopSelector(t); !strings.Contains(sel, kubernetes.LabelLaneRouter) {
		t.Errorf("Service restored although bob's lane runs: %s", sel)
	}
	_ = aliceOut

	// bob is SIGKILLed: his requests fall back to base by themselves.
	bob.Process.Kill()
	bob.Wait()
	killLaneApp(ports["bob"])
	fb := e.waitAnswer(t, "bob", "shop-", time.Minute)
	t.Logf("bob's requests fall back to base %v after SIGKILL", fb.Round(time.Millisecond))

	// tether clean restores the Service and removes every object of ours.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := tetherCmd(ctx, "clean", "--workspace", ws).CombinedOutput()
	if err != nil {
		t.Fatalf("tether clean: %v\n%s", err, out)
	}
	t.Logf("tether clean:\n%s", out)
	if sel, ann := e.shopSelector(t); sel != e.selector || ann[kubernetes.AnnotationLaneSelector] != "" {
		t.Fatalf("Service not restored: selector %s (want %s), annotations %v", sel, e.selector, ann)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for left := e.ourObjects(t); len(left) > 0; left = e.ourObjects(t) {
		if time.Now().After(deadline) {
			t.Fatalf("left in namespace %s: %v", laneNS, left)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if who := e.clientGet(t, "X-Tether-Lane: bob"); !strings.HasPrefix(who, "shop-") {
		t.Errorf("after clean: %q", who)
	}
}
