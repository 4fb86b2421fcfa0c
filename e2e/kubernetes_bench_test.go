package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/plugins/kubernetes"
)

// BenchmarkKubernetes: toggle → first byte through the agent pod (goal
// ≤ 5 s with the image present), the agent's memory, and the throughput of
// a download from a pod through the tunnel versus `kubectl port-forward` to
// the same pod.
func BenchmarkKubernetes(b *testing.B) {
	e := setupK8s(b)
	const size = 256 << 20
	for range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		t0 := time.Now()
		tun, err := kubernetes.Open(ctx, kubernetes.Config{Kubeconfig: e.tb.Kubeconfig, Namespace: k8sNS, Session: randSession("bench-")})
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		c, err := tun.Dial(ctx, "tcp", net.JoinHostPort(e.podIP, "8080"))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := httpGetVia(c, e.podIP); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(t0).Milliseconds()), "first_byte_ms")

		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return tun.Dial(ctx, "tcp", net.JoinHostPort(e.podIP, "8080"))
		}}
		tunnelMBs := download(b, &http.Client{Transport: tr}, fmt.Sprintf("http://%s:8080/bulk?bytes=%d", e.podIP, size))
		tr.CloseIdleConnections()

		ns, pod := tun.Pod()
		b.ReportMetric(podMemoryMiB(b, e, ns, pod), "agent_MiB")
		_ = tun.Close()
		cancel()

		pfMBs := portForwardDownload(b, e, size)
		b.ReportMetric(tunnelMBs, "tunnel_MB/s")
		b.ReportMetric(pfMBs, "kubectl_pf_MB/s")
		b.ReportMetric(tunnelMBs/pfMBs, "ratio")
	}
}

func download(b *testing.B, c *http.Client, url string) float64 {
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		b.Fatal(err)
	}
	return float64(n) / time.Since(start).Seconds() / 1e6
}

// podMemoryMiB is the RSS of the agent process of a pod: on the
// single-node testbed the pod's processes run on this machine; the one in the
// pod's cgroup whose command is tether-agent.
func podMemoryMiB(b *testing.B, e *k8sEnv, ns, pod string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	uid, err := e.tb.Run(ctx, "", "-n", ns, "get", "pod", pod, "-o", "jsonpath={.metadata.uid}")
	if err != nil {
		b.Fatal(err)
	}
	uid = strings.TrimSpace(uid)
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		cg, err := os.ReadFile("/proc/" + d.Name() + "/cgroup")
		if err != nil || !(strings.Contains(string(cg), uid) || strings.Contains(string(cg), strings.ReplaceAll(uid, "-", "_"))) {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if !strings.Contains(string(cmd), "tether-agent") {
			continue
		}
		pid, _ := strconv.Atoi(d.Name())
		return rssMiB(b, pid)
	}
	b.Logf("agent process of %s/%s not found", ns, pod)
	return 0
}

func portForwardDownload(b *testing.B, e *k8sEnv, size int) float64 {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, e.tb.Kubectl, "--kubeconfig", e.tb.Kubeconfig, "-n", k8sNS, "port-forward", "pod/orders", "0:8080")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(out)
	local := ""
	for sc.Scan() {
		// "Forwarding from 127.0.0.1:PORT -> 8080"
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "Forwarding" && strings.HasPrefix(f[2], "127.0.0.1:") {
			local = f[2]
			break
		}
	}
	if local == "" {
		b.Fatal("kubectl port-forward printed no address")
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return download(b, http.DefaultClient, fmt.Sprintf("http://%s/bulk?bytes=%d", local, size))
}
