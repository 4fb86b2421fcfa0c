package bench

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/fakecloud"
)

// BenchmarkCallReader measures what reading the HTTP calls costs on the
// channel: two Tether proxies (child processes) in front of the same sshd,
// one with the call reader (channel.Config.OnCall into a ring, as every
// launch has) and one without, download the same HTTP bodies in
// alternating rounds. The target is ratio >= 0.97 (at most 3% lost).
func BenchmarkCallReader(b *testing.B) {
	if raceEnabled {
		b.Skip("built with -race: throughput would be meaningless")
	}
	c := fakecloud.Start(b)
	bulk := startBulk(b, c)
	host, portStr, _ := net.SplitHostPort(c.SSHAddr)
	port, _ := strconv.Atoi(portStr)
	cfg := childConfig{Host: host, Port: port, User: c.User, Identity: c.IdentityFile, KnownHosts: c.KnownHostsFile, CIDR: c.VPCCIDR}
	plain := startTetherChild(b, cfg)
	plain.name = "without"
	cfg.Calls = true
	reading := startTetherChild(b, cfg)
	reading.name = "with calls"
	waitPool(b, c.SSHAddr, 8)
	for _, p := range []proxy{plain, reading} {
		if _, err := echoOnce(p, c.EchoAddr, 10*time.Second); err != nil {
			b.Fatalf("%s: %v", p.name, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	var table strings.Builder
	fmt.Fprintf(&table, "\nChannel throughput with and without the call reader (same sshd, alternating rounds, best of %d)\n", max(*flagRounds, 1))
	for _, streams := range []int{1, 4} {
		b.Run(fmt.Sprintf("%dStreams", streams), func(b *testing.B) {
			total := int64(*flagMiB) << 20
			var best, cpu [2]float64 // MB/s, and the proxy's CPU s/GiB in its best round
			for range b.N {
				for _, p := range []proxy{plain, reading} { // warm-up
					if _, err := parallelDownload(p, bulk, streams, 8<<20); err != nil {
						b.Fatalf("%s: %v", p.name, err)
					}
				}
				var all [2][]string
				for round := range max(*flagRounds, 1) {
					order := []int{0, 1}
					if round%2 == 1 {
						order = []int{1, 0}
					}
					for _, i := range order {
						p := []proxy{plain, reading}[i]
						cpu0 := cpuSeconds(p.pid)
						mbs, err := parallelDownload(p, bulk, streams, total)
						if err != nil {
							b.Fatalf("%s: %v", p.name, err)
						}
						if mbs > best[i] {
							best[i], cpu[i] = mbs, (cpuSeconds(p.pid)-cpu0)/(float64(total)/(1<<30))
						}
						all[i] = append(all[i], fmt.Sprintf("%.0f", mbs))
					}
				}
				b.Logf("%d stream(s), MB/s per round: without %s, with calls %s", streams, strings.Join(all[0], " "), strings.Join(all[1], " "))
			}
			ratio := best[1] / best[0]
			b.ReportMetric(best[0], "without_MB/s")
			b.ReportMetric(best[1], "withcalls_MB/s")
			b.ReportMetric(ratio, "ratio")
			b.ReportMetric(cpu[0], "without_cpu_s/GiB")
			b.ReportMetric(cpu[1], "withcalls_cpu_s/GiB")
			b.ReportMetric(0, "ns/op")
			fmt.Fprintf(&table, "  %d stream(s), %d MiB: without %.0f MB/s (%.2f CPU s/GiB), with calls %.0f MB/s (%.2f CPU s/GiB), ratio %.3f  (target >= 0.97: %s)\n",
				streams, *flagMiB, best[0], cpu[0], best[1], cpu[1], ratio, verdict(ratio >= 0.97))
		})
	}
	fmt.Fprint(os.Stdout, table.String())
}
