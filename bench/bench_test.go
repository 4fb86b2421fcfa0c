package bench

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/fakecloud"
)

var (
	flagMiB     = flag.Int("mib", 512, "MiB downloaded per throughput benchmark and per tool (split over the streams)")
	flagLatency = flag.Int("latencyconns", 500, "sequential connections of the latency benchmark")
	flagConc    = flag.Int("concconns", 2000, "connections of the concurrency benchmark")
	flagRounds  = flag.Int("rounds", 3, "throughput rounds per tool (alternating); the best round is reported")
	flagInproc  = flag.Bool("inproc", false, "run the Tether proxy inside the benchmark process instead of a child process")
	flagSource  = flag.String("source", "fast", `bulk data source: "fast" (precomputed block served in the vpc) or "fakecloud" (fakecloud's GET /bytes, which generates ChaCha8 in this process)`)
)

// raceEnabled is set by race_test.go: numbers measured with -race mean
// nothing, so the benchmark refuses to run.
var raceEnabled bool

// cipher is what both sides use.
const cipher = "aes128-gcm@openssh.com"

// env is one fake cloud with both proxies in front of the same sshd.
type env struct {
	cloud  *fakecloud.Cloud
	bulk   string // "ip:port" in the vpc serving GET /bytes?n=N
	tether proxy
	sshD   proxy
	rows   []row
}

// row is one line of the summary table.
type row struct {
	name, unit     string
	tether, sshD   float64
	ratio          float64 // tether / sshD
	target, status string
}

func (e *env) add(r row) { e.rows = append(e.rows, r) }

func setup(b *testing.B) *env {
	b.Helper()
	c := fakecloud.Start(b)
	e := &env{cloud: c, bulk: c.HTTPAddr}
	if *flagSource == "fast" {
		e.bulk = startBulk(b, c)
	}

	// (a) Tether: plugins/ssh + channel.
	host, portStr, _ := net.SplitHostPort(c.SSHAddr)
	port, _ := strconv.Atoi(portStr)
	cfg := childConfig{Host: host, Port: port, User: c.User, Identity: c.IdentityFile,
		KnownHosts: c.KnownHostsFile, CIDR: c.VPCCIDR}
	if *flagInproc {
		ch, closeAll, err := startTether(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(closeAll)
		e.tether = proxy{name: "tether", addr: ch.SOCKSAddr(), user: ch.Username(), pass: ch.Password()}
	} else {
		e.tether = startTetherChild(b, cfg)
	}
	waitPool(b, c.SSHAddr, 4)

	// (b) OpenSSH ssh -D against the same sshd.
	e.sshD = startSSHD(b, c, host, portStr)

	// Both must work before anything is measured; the pool of the tunnel
	// connects in the background, let it fill.
	for _, p := range []proxy{e.tether, e.sshD} {
		if _, err := echoOnce(p, c.EchoAddr, 10*time.Second); err != nil {
			b.Fatalf("%s: echo: %v", p.name, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	return e
}

// startSSHD starts `ssh -D` on a free loopback port and waits for its SOCKS
// listener. It is killed by PID in cleanup.
func startSSHD(b *testing.B, c *fakecloud.Cloud, host, port string) proxy {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var stderr bytes.Buffer
	cmd := exec.Command("ssh", "-D", addr, "-N",
		"-c", cipher,
		"-o", "ControlMaster=no",
		"-i", c.IdentityFile,
		"-o", "UserKnownHostsFile="+c.KnownHostsFile,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes",
		"-o", "ExitOnForwardFailure=yes",
		"-F", "/dev/null",
		"-p", port,
		c.User+"@"+host)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("ssh -D: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return proxy{name: "ssh -D", addr: addr, pid: cmd.Process.Pid}
		}
		select {
		case <-exited:
			b.Fatalf("ssh -D exited: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("ssh -D not listening on %s: %s", addr, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkTetherVsSSHD runs every comparison against one fake cloud. Each
// sub-benchmark iteration is a complete fixed-size workload for both tools.
func BenchmarkTetherVsSSHD(b *testing.B) {
	if raceEnabled {
		b.Skip("built with -race: throughput and latency would be meaningless")
	}
	e := setup(b)
	b.Run("Throughput1Stream", func(b *testing.B) { e.throughput(b, 1, 1.3) })
	b.Run("Throughput4Streams", func(b *testing.B) { e.throughput(b, 4, 2.0) })
	b.Run("Latency", e.latency)
	b.Run("Concurrent", e.concurrent)
	e.printTable()
}

// ---- throughput ----

// download fetches n bytes of GET /bytes through p and returns how long it
// took from the SOCKS connect to the last byte. The body is counted, not
// hashed: the point is the transport's speed.
func download(p proxy, target string, n int64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	conn, err := p.dial(ctx, target)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /bytes?n=%d HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n", n); err != nil {
		return 0, err
	}
	br := bufio.NewReaderSize(conn, 4096)
	status, err := br.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("status line: %w", err)
	}
	if !strings.Contains(status, " 200 ") {
		return 0, fmt.Errorf("status %q", strings.TrimSpace(status))
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("headers: %w", err)
		}
		if line == "\r\n" {
			break
		}
	}
	// bufio hands large reads straight to conn once its buffer is empty.
	buf := make([]byte, 256<<10)
	var got int64
	for got < n {
		m, err := br.Read(buf)
		got += int64(m)
		if err != nil {
			if err == io.EOF && got == n {
				break
			}
			return 0, fmt.Errorf("body: %d of %d bytes: %w", got, n, err)
		}
	}
	return time.Since(start), nil
}

// parallelDownload downloads total bytes over streams parallel connections
// and returns the aggregate MB/s (1 MB = 1e6 bytes).
func parallelDownload(p proxy, target string, streams int, total int64) (float64, error) {
	per := total / int64(streams)
	var wg sync.WaitGroup
	errs := make([]error, streams)
	start := time.Now()
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = download(p, target, per)
		}()
	}
	wg.Wait()
	d := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return float64(per*int64(streams)) / d.Seconds() / 1e6, nil
}

func (e *env) throughput(b *testing.B, streams int, target float64) {
	total := int64(*flagMiB) << 20
	var tMBs, sMBs float64
	var cpuRow *row
	for range b.N {
		// Warm-up so that both start with open windows and hot caches.
		for _, p := range []proxy{e.tether, e.sshD} {
			if _, err := parallelDownload(p, e.bulk, streams, 8<<20); err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
		}
		// Alternate the tools round by round so that both see the same
		// background load; report the best round of each.
		var tAll, sAll []string
		var tCPU, sCPU float64 // proxy process CPU seconds per GiB, best round
		tMBs, sMBs = 0, 0
		for round := range max(*flagRounds, 1) {
			order := []proxy{e.tether, e.sshD}
			if round%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
			for _, p := range order {
				cpu0 := cpuSeconds(p.pid)
				mbs, err := parallelDownload(p, e.bulk, streams, total)
				if err != nil {
					b.Fatalf("%s: %v", p.name, err)
				}
				cpu := (cpuSeconds(p.pid) - cpu0) / (float64(total) / (1 << 30))
				if p == e.tether {
					if mbs > tMBs {
						tMBs, tCPU = mbs, cpu
					}
					tAll = append(tAll, fmt.Sprintf("%.0f", mbs))
				} else {
					if mbs > sMBs {
						sMBs, sCPU = mbs, cpu
					}
					sAll = append(sAll, fmt.Sprintf("%.0f", mbs))
				}
			}
		}
		b.Logf("%d stream(s), MB/s per round: tether %s, ssh -D %s", streams, strings.Join(tAll, " "), strings.Join(sAll, " "))
		if tCPU > 0 {
			b.ReportMetric(tCPU, "tether_cpu_s/GiB")
			b.ReportMetric(sCPU, "sshD_cpu_s/GiB")
			cpuRow = &row{name: fmt.Sprintf("  proxy process CPU, %d stream(s)", streams), unit: "s/GiB", tether: tCPU, sshD: sCPU, ratio: tCPU / sCPU}
		}
	}
	ratio := tMBs / sMBs
	b.ReportMetric(tMBs, "tether_MB/s")
	b.ReportMetric(sMBs, "sshD_MB/s")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(0, "ns/op")
	e.add(row{
		name: fmt.Sprintf("throughput, %d stream(s), %d MiB", streams, *flagMiB), unit: "MB/s",
		tether: tMBs, sshD: sMBs, ratio: ratio,
		target: fmt.Sprintf("ratio >= %.1f", target), status: verdict(ratio >= target),
	})
	if cpuRow != nil {
		e.add(*cpuRow)
	}
}

// ---- latency ----

// echoOnce connects through p, sends 64 bytes to the echo service, reads
// them back and closes: the cost of one short-lived connection.
func echoOnce(p proxy, echoAddr string, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var msg, got [64]byte
	copy(msg[:], "tether bench ping ")
	start := time.Now()
	conn, err := p.dial(ctx, echoAddr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(msg[:]); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(conn, got[:]); err != nil {
		return 0, err
	}
	d := time.Since(start)
	if got != msg {
		return 0, fmt.Errorf("echo mismatch")
	}
	return d, nil
}

func percentile(ds []time.Duration, p float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return float64(s[i]) / 1e6
}

func (e *env) latency(b *testing.B) {
	n := *flagLatency
	res := map[string][]time.Duration{}
	for range b.N {
		for _, p := range []proxy{e.tether, e.sshD} {
			for range 20 { // warm-up
				if _, err := echoOnce(p, e.cloud.EchoAddr, 10*time.Second); err != nil {
					b.Fatalf("%s: %v", p.name, err)
				}
			}
			ds := make([]time.Duration, 0, n)
			for range n {
				d, err := echoOnce(p, e.cloud.EchoAddr, 10*time.Second)
				if err != nil {
					b.Fatalf("%s: %v", p.name, err)
				}
				ds = append(ds, d)
			}
			res[p.name] = ds
		}
	}
	t50, t99 := percentile(res[e.tether.name], 0.5), percentile(res[e.tether.name], 0.99)
	s50, s99 := percentile(res[e.sshD.name], 0.5), percentile(res[e.sshD.name], 0.99)
	b.ReportMetric(t50, "tether_p50_ms")
	b.ReportMetric(s50, "sshD_p50_ms")
	b.ReportMetric(t99, "tether_p99_ms")
	b.ReportMetric(s99, "sshD_p99_ms")
	b.ReportMetric(t50/s50, "ratio_p50")
	b.ReportMetric(0, "ns/op")
	e.add(row{name: fmt.Sprintf("latency p50, %d conns", n), unit: "ms", tether: t50, sshD: s50, ratio: t50 / s50,
		target: "ratio <= 1.0", status: verdict(t50 <= s50)})
	e.add(row{name: fmt.Sprintf("latency p99, %d conns", n), unit: "ms", tether: t99, sshD: s99, ratio: t99 / s99})
}

// ---- concurrency ----

// concurrentEcho opens n connections at once through p, each echoing 64
// bytes, holds them all open until every one has finished (or failed), and
// returns how many succeeded and how long it took.
func concurrentEcho(p proxy, echoAddr string, n int) (ok int, d time.Duration, firstErr error) {
	var (
		okN     atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		release = make(chan struct{})
	)
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			conn, err := p.dial(ctx, echoAddr)
			if err == nil {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(60 * time.Second))
				var msg, got [64]byte
				copy(msg[:], "tether bench concurrent ")
				if _, err = conn.Write(msg[:]); err == nil {
					if _, err = io.ReadFull(conn, got[:]); err == nil && got != msg {
						err = fmt.Errorf("echo mismatch")
					}
				}
			}
			if err == nil {
				okN.Add(1)
			} else {
				errOnce.Do(func() { firstErr = err })
			}
			wg.Done()
			<-release // keep the connection open until all are done
		}()
	}
	wg.Wait()
	d = time.Since(start)
	close(release)
	return int(okN.Load()), d, firstErr
}

func (e *env) concurrent(b *testing.B) {
	n := *flagConc
	var tOK, sOK int
	var tD, sD time.Duration
	for range b.N {
		var err error
		tOK, tD, err = concurrentEcho(e.tether, e.cloud.EchoAddr, n)
		if err != nil {
			b.Logf("tether: first error: %v", err)
		}
		time.Sleep(time.Second) // let the previous connections drain
		sOK, sD, err = concurrentEcho(e.sshD, e.cloud.EchoAddr, n)
		if err != nil {
			b.Logf("ssh -D: first error: %v", err)
		}
		time.Sleep(time.Second)
	}
	b.ReportMetric(float64(tOK), "tether_ok")
	b.ReportMetric(float64(sOK), "sshD_ok")
	b.ReportMetric(tD.Seconds()*1e3, "tether_ms")
	b.ReportMetric(sD.Seconds()*1e3, "sshD_ms")
	b.ReportMetric(tD.Seconds()/sD.Seconds(), "ratio_time")
	b.ReportMetric(0, "ns/op")
	e.add(row{name: fmt.Sprintf("concurrent conns ok (of %d)", n), unit: "conns", tether: float64(tOK), sshD: float64(sOK),
		ratio: float64(tOK) / float64(max(sOK, 1)), target: fmt.Sprintf("tether %d/%d", n, n), status: verdict(tOK == n)})
	e.add(row{name: fmt.Sprintf("concurrent %d, wall time", n), unit: "ms", tether: tD.Seconds() * 1e3, sshD: sD.Seconds() * 1e3,
		ratio: tD.Seconds() / sD.Seconds()})
}

// ---- report ----

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

func (e *env) printTable() {
	if len(e.rows) == 0 {
		return
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nTether vs OpenSSH ssh -D (%s, same sshd)\n", cipher)
	fmt.Fprintf(&sb, "%-36s %-6s %10s %10s %8s  %s\n", "benchmark", "unit", "tether", "ssh -D", "ratio", "target")
	for _, r := range e.rows {
		tgt := ""
		if r.target != "" {
			tgt = r.target + ": " + r.status
		}
		fmt.Fprintf(&sb, "%-36s %-6s %10.2f %10.2f %8.2f  %s\n", r.name, r.unit, r.tether, r.sshD, r.ratio, tgt)
	}
	fmt.Fprintln(os.Stdout, sb.String())
}
