package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

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
