package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/tether-dev/tether/client"
)

// The foundation's figures: cold start of `tether serve` to the initialize
// reply, idle RSS, and the round trip of runConfig/list over stdio.
// Goals: <=50 ms, <=30 MiB, p50 <=0.2 ms. Run with `make bench`.

func startBenchServe(b *testing.B, ws string) (*client.Client, *exec.Cmd) {
	cmd := exec.Command(tetherBin, "serve", "--workspace", ws, "--log-level", "error")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return client.New(out, in, in), cmd
}

func stop(c *client.Client, cmd *exec.Cmd) {
	c.Close()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

func percentile(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)]
}

func BenchmarkColdStart(b *testing.B) {
	ws := b.TempDir()
	for range b.N {
		var samples []time.Duration
		for range 30 {
			start := time.Now()
			c, cmd := startBenchServe(b, ws)
			if err := c.Call(context.Background(), "initialize", map[string]any{}, nil); err != nil {
				b.Fatal(err)
			}
			samples = append(samples, time.Since(start))
			stop(c, cmd)
		}
		b.ReportMetric(float64(percentile(samples, 0.5).Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(percentile(samples, 0.9).Microseconds())/1000, "p90_ms")
	}
}

func BenchmarkIdleRSS(b *testing.B) {
	ws := b.TempDir()
	for range b.N {
		c, cmd := startBenchServe(b, ws)
		if err := c.Call(context.Background(), "initialize", map[string]any{}, nil); err != nil {
			b.Fatal(err)
		}
		_ = c.Call(context.Background(), "runConfig/list", map[string]any{}, nil)
		time.Sleep(time.Second)
		b.ReportMetric(rssMiB(b, cmd.Process.Pid), "rss_MiB")
		stop(c, cmd)
	}
}

func rssMiB(b *testing.B, pid int) float64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

func BenchmarkRunConfigList(b *testing.B) {
	ws := b.TempDir()
	c, cmd := startBenchServe(b, ws)
	defer stop(c, cmd)
	ctx := context.Background()
	if err := c.Call(ctx, "initialize", map[string]any{}, nil); err != nil {
		b.Fatal(err)
	}
	for i := range 20 {
		cfg := map[string]any{"name": "c" + strconv.Itoa(i), "type": "exec", "exec": map[string]any{"command": []string{"true"}}}
		if err := c.Call(ctx, "runConfig/save", map[string]any{"config": cfg}, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		samples := make([]time.Duration, 0, 2000)
		for range 2000 {
			start := time.Now()
			if err := c.Call(ctx, "runConfig/list", map[string]any{}, nil); err != nil {
				b.Fatal(err)
			}
			samples = append(samples, time.Since(start))
		}
		b.ReportMetric(float64(percentile(samples, 0.5).Nanoseconds())/1e6, "p50_ms")
		b.ReportMetric(float64(percentile(samples, 0.99).Nanoseconds())/1e6, "p99_ms")
	}
}

// BenchmarkDocker measures Docker mode: launch → app running and exited
// (images present; goal ≤3 s), and the throughput of a download from the
// private network through the sidecar versus through the channel directly
// (a client on the host using the same proxy through `tether connect`).
func BenchmarkDocker(b *testing.B) {
	d := requireDocker(b)
	w := startCloudWS(b, true)
	img := probeImage(b, d)
	const size = 256 << 20
	url := fmt.Sprintf("http://%s/bytes?n=%d", w.cloud.HTTPAddr, size)
	appendConfig(b, w.dir, fmt.Sprintf(`
  - name: hello
    type: docker
    docker: {image: %s, args: ["http://%s/"]}
    interconnect: {enabled: true, proxy: bastion}
  - name: download
    type: docker
    docker: {image: %s, args: ["-download", "%s"]}
    interconnect: {enabled: true, proxy: bastion}
`, img, w.cloud.HTTPAddr, img, url))
	for range b.N {
		start := time.Now()
		if out, err := exec.Command(tetherBin, "launch", "--workspace", w.dir, "hello").CombinedOutput(); err != nil {
			b.Fatalf("launch: %v\n%s", err, out)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "launch_to_exit_ms")

		out, err := exec.Command(tetherBin, "launch", "--workspace", w.dir, "download").Output()
		if err != nil {
			b.Fatalf("download through the sidecar: %v\n%s", err, out)
		}
		var n int64
		var secs, sidecar float64
		if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "downloaded %d bytes in %fs: %f MB/s", &n, &secs, &sidecar); err != nil {
			b.Fatalf("probe output %q: %v", out, err)
		}
		direct := connectDownload(b, w, url)
		b.ReportMetric(sidecar, "sidecar_MB/s")
		b.ReportMetric(direct, "channel_MB/s")
		b.ReportMetric(sidecar/direct, "ratio")
	}
}

// connectDownload downloads url through `tether connect`'s SOCKS5 port and
// returns MB/s.
func connectDownload(b *testing.B, w *cloudWS, url string) float64 {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, tetherBin, "connect", "--workspace", w.dir, "bastion", "--output", "json")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	var info map[string]string
	if err := json.NewDecoder(out).Decode(&info); err != nil {
		b.Fatal(err)
	}
	dialer, err := proxy.SOCKS5("tcp", info["socks5"], &proxy.Auth{User: info["username"], Password: info["password"]}, proxy.Direct)
	if err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{DialContext: dialer.(proxy.ContextDialer).DialContext}
	defer tr.CloseIdleConnections()
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Get(url)
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
