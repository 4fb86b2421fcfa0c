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
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tether-dev/tether/plugins/kubernetes"
)

// BenchmarkKubernetes: toggle → first byte through the agent pod (goal
// ≤ 5 s with the image present), the agent's memory, and, side by side in
// one run against the same pod: the throughput of downloads over 1 and 4
// streams, the machine's CPU time per GB moved (every process of the path
// runs on this machine: the API server, kubelet, container runtime, the
// pods, the client) and the connect + request latency (p50, p99) through
// the tunnel (data port), through the tunnel over SSH channels only (the
// design before the data port), through `kubectl port-forward` as it runs
// by default (SPDY tunnelled in WebSocket since 1.31) and through
// `kubectl port-forward` over plain SPDY (KUBECTL_PORT_FORWARD_WEBSOCKETS
// =false, the protocol the tunnel tries first).
//
// The test process runs with the GC setting of the tether binary (GOGC=400,
// cmd/tether tuneGC): the tunnel runs inside `tether serve`.
func BenchmarkKubernetes(b *testing.B) {
	e := setupK8s(b)
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	const size = 256 << 20
	const rounds = 3     // best of, alternating the tools
	const latConns = 200 // sequential connections for the latency
	for range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
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
		sshTun, err := kubernetes.Open(ctx, kubernetes.Config{Kubeconfig: e.tb.Kubeconfig, Namespace: k8sNS,
			Session: randSession("bench-ssh-"), SSHChannelsOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		viaTunnel := func(t *kubernetes.Tunnel) func(context.Context) (net.Conn, error) {
			return func(ctx context.Context) (net.Conn, error) {
				return t.Dial(ctx, "tcp", net.JoinHostPort(e.podIP, "8080"))
			}
		}
		viaLocal := func(local string) func(context.Context) (net.Conn, error) {
			return func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", local)
			}
		}
		tools := []struct {
			name string
			dial func(context.Context) (net.Conn, error)
		}{
			{"tunnel", viaTunnel(tun)},
			{"ssh", viaTunnel(sshTun)},
			{"kubectl", viaLocal(startPortForward(b, e))},
			{"kubectl_spdy", viaLocal(startPortForward(b, e, "KUBECTL_PORT_FORWARD_WEBSOCKETS=false"))},
		}
		best := map[string]float64{}
		cpu := map[string]time.Duration{} // machine CPU time, all rounds
		for _, streams := range []int{1, 4} {
			for range rounds {
				for _, tool := range tools {
					key := fmt.Sprintf("%s_%d", tool.name, streams)
					c0 := machineCPU(b)
					best[key] = max(best[key], parallelDownload(b, tool.dial, e.podIP, size, streams))
					cpu[key] += machineCPU(b) - c0
				}
			}
		}
		lat := map[string][2]float64{}
		for _, tool := range tools {
			lat[tool.name] = connectLatency(b, tool.dial, e.podIP, latConns)
		}

		ns, pod := tun.Pod()
		b.ReportMetric(podMemoryMiB(b, e, ns, pod), "agent_MiB")
		protocol := tun.Protocol()
		_ = sshTun.Close()
		_ = tun.Close()
		cancel()

		gb := float64(size) * rounds / 1e9
		for _, streams := range []int{1, 4} {
			v := func(tool string) (float64, float64) {
				key := fmt.Sprintf("%s_%d", tool, streams)
				return best[key], cpu[key].Seconds() / gb
			}
			tu, tuCPU := v("tunnel")
			ss, ssCPU := v("ssh")
			pf, pfCPU := v("kubectl")
			ps, psCPU := v("kubectl_spdy")
			b.ReportMetric(tu, fmt.Sprintf("tunnel_%dstream_MB/s", streams))
			b.ReportMetric(ss, fmt.Sprintf("sshchan_%dstream_MB/s", streams))
			b.ReportMetric(pf, fmt.Sprintf("kubectl_pf_%dstream_MB/s", streams))
			b.ReportMetric(ps, fmt.Sprintf("kubectl_pf_spdy_%dstream_MB/s", streams))
			b.ReportMetric(tu/pf, fmt.Sprintf("ratio_%dstream", streams))
			b.ReportMetric(tu/ps, fmt.Sprintf("ratio_spdy_%dstream", streams))
			fmt.Printf("kubernetes %d stream(s), 256 MiB, best of %d: tunnel (%s) %.0f MB/s, SSH channels %.0f MB/s, kubectl port-forward %.0f MB/s, kubectl port-forward over SPDY %.0f MB/s (ratio %.2f, to kubectl over SPDY %.2f, before %.2f)\n",
				streams, rounds, protocol, tu, ss, pf, ps, tu/pf, tu/ps, ss/pf)
			fmt.Printf("kubernetes %d stream(s), machine CPU seconds per GB moved: tunnel %.1f, SSH channels %.1f, kubectl port-forward %.1f, kubectl port-forward over SPDY %.1f\n",
				streams, tuCPU, ssCPU, pfCPU, psCPU)
		}
		for _, tool := range tools {
			b.ReportMetric(lat[tool.name][0], tool.name+"_connect_p50_ms")
		}
		fmt.Printf("kubernetes connect + GET, %d sequential, p50 (p99): tunnel %.2f (%.2f) ms, SSH channels %.2f (%.2f) ms, kubectl port-forward %.2f (%.2f) ms, over SPDY %.2f (%.2f) ms\n",
			latConns, lat["tunnel"][0], lat["tunnel"][1], lat["ssh"][0], lat["ssh"][1], lat["kubectl"][0], lat["kubectl"][1], lat["kubectl_spdy"][0], lat["kubectl_spdy"][1])
	}
}

// machineCPU is the CPU time the machine has spent outside idle and I/O
// wait since boot, summed over its CPUs (/proc/stat).
func machineCPU(b *testing.B) time.Duration {
	st, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(st), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 7 { // idle, iowait; steal and guest are not ours
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("/proc/stat: %q", line)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// parallelDownload downloads size bytes in total over streams parallel
// connections and returns the aggregate MB/s.
func parallelDownload(b *testing.B, dial func(context.Context) (net.Conn, error), host string, size, streams int) float64 {
	b.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConnsPerHost: streams, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	url := fmt.Sprintf("http://%s:8080/bulk?bytes=%d", host, size/streams)
	start := time.Now()
	errs := make(chan error, streams)
	var total atomic.Int64
	for range streams {
		go func() {
			resp, err := cl.Get(url)
			if err != nil {
				errs <- err
				return
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			total.Add(n)
			errs <- err
		}()
	}
	for range streams {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	if total.Load() != int64(size/streams*streams) {
		b.Fatalf("downloaded %d bytes, want %d", total.Load(), size/streams*streams)
	}
	return float64(total.Load()) / time.Since(start).Seconds() / 1e6
}

// connectLatency: n sequential new connections, each one GET / and its
// answer; p50 and p99 in milliseconds.
func connectLatency(b *testing.B, dial func(context.Context) (net.Conn, error), host string, n int) [2]float64 {
	b.Helper()
	ds := make([]time.Duration, 0, n)
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t0 := time.Now()
		c, err := dial(ctx)
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		if _, err := httpGetVia(c, host); err != nil {
			cancel()
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
		cancel()
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return [2]float64{ms(ds[len(ds)/2]), ms(ds[len(ds)*99/100])}
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

// startPortForward runs `kubectl port-forward pod/orders 0:8080` (with env
// added to its environment) until the benchmark ends and returns its local
// address.
func startPortForward(b *testing.B, e *k8sEnv, env ...string) string {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, e.tb.Kubectl, "--kubeconfig", e.tb.Kubeconfig, "-n", k8sNS, "port-forward", "pod/orders", "0:8080")
	cmd.Env = append(os.Environ(), env...)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); _ = cmd.Wait() })
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
	return local
}
