package e2e

import (
	"context"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/plugins/kubernetes"
)

// BenchmarkLanes (docs/lanes.md): toggle → effect for the first developer
// of a Service (router set up) and the next one (router there, goal ≤ 2 s);
// the p50 latency the router adds to untagged requests (goal ≤ 1 ms), with
// a new connection per request and on keep-alive connections; fallback to
// base after a SIGKILL (goal ≤ 5 s); failed tagged requests while the last
// developer stops cleanly and the Service is restored (goal 0).
func BenchmarkLanes(b *testing.B) {
	e := setupLanes(b)
	for range b.N {
		ws, ports := e.laneWorkspace(b, "alice", "bob")
		b.Cleanup(func() {
			killLaneApp(ports["alice"])
			killLaneApp(ports["bob"])
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			kubernetes.RestoreService(ctx, kubernetes.Config{Kubeconfig: e.tb.Kubeconfig, Namespace: laneNS}, "shop")
		})
		t0 := time.Now()
		alice, _ := startLaneLaunch(b, ws, "alice")
		e.waitAnswer(b, "alice", "alice-laptop", 3*time.Minute)
		b.ReportMetric(time.Since(t0).Seconds(), "first_toggle_s")
		t0 = time.Now()
		bob, bobOut := startLaneLaunch(b, ws, "bob")
		laneAt := make(chan time.Time, 1)
		go func() { // when the agent pod is up and the lane is being set up
			for !strings.Contains(bobOut.String(), "setting up lane") && time.Since(t0) < 3*time.Minute {
				time.Sleep(5 * time.Millisecond)
			}
			laneAt <- time.Now()
		}()
		e.waitAnswer(b, "bob", "bob-laptop", 3*time.Minute)
		b.ReportMetric(time.Since(t0).Seconds(), "toggle_s")
		b.ReportMetric(time.Since(<-laneAt).Seconds(), "lane_setup_to_effect_s")

		// Latency: the base Service directly vs through the router.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		base, err := e.cs.CoreV1().Services(laneNS).Get(ctx, "shop-tether-base", metav1.GetOptions{})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		for _, keep := range []bool{false, true} {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keep, MaxIdleConnsPerHost: 4}}
			direct := p50(b, c, "http://"+base.Spec.ClusterIP+"/", 1000)
			routed := p50(b, c, "http://"+e.clusterIP+"/", 1000)
			name := "newconn"
			if keep {
				name = "keepalive"
			}
			b.ReportMetric(float64(direct.Microseconds()), name+"_direct_p50_us")
			b.ReportMetric(float64(routed.Microseconds()), name+"_router_p50_us")
			b.ReportMetric(float64((routed - direct).Microseconds()), name+"_added_p50_us")
		}

		// SIGKILL bob: how long until his requests are served by base.
		bob.Process.Kill()
		bob.Wait()
		killLaneApp(ports["bob"])
		b.ReportMetric(e.waitAnswer(b, "bob", "shop-", time.Minute).Seconds(), "fallback_after_kill_s")
		time.Sleep(17 * time.Second) // bob's lease expires: alice is the last

		// alice stops cleanly while tagged requests run: none may fail.
		var failed, done atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, _, err := e.hostGet(c, "alice"); err != nil {
						failed.Add(1)
						b.Logf("tagged request failed during the stop: %v", err)
					}
					done.Add(1)
				}
			})
		}
		time.Sleep(500 * time.Millisecond)
		t0 = time.Now()
		alice.Process.Signal(syscall.SIGTERM)
		alice.Wait()
		stopTook := time.Since(t0)
		time.Sleep(3 * time.Second) // after the restore too
		close(stop)
		wg.Wait()
		b.ReportMetric(stopTook.Seconds(), "clean_stop_with_restore_s")
		b.ReportMetric(float64(failed.Load()), "failed_tagged_on_stop")
		b.ReportMetric(float64(done.Load()), "tagged_requests_on_stop")
		if sel, _ := e.shopSelector(b); sel != e.selector {
			b.Errorf("Service not restored by the last clean stop: %s", sel)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 2*time.Minute)
		tetherCmd(ctx, "clean", "--workspace", ws).Run()
		cancel()
	}
}

func p50(b *testing.B, c *http.Client, url string, n int) time.Duration {
	for range 50 { // warm up
		c.Get(url)
	}
	ds := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ds = append(ds, time.Since(t0))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[n/2]
}
