package bench

import (
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/fakecloud"
)

// startBulk serves GET /bytes?n=N inside the vpc from a precomputed 1 MiB
// random block. fakecloud's own /bytes generates ChaCha8 output on the fly in
// this process (≈0.6 GB/s per core): at the rates measured here that would
// take a third of this 2-core machine and hide the transports' differences.
func startBulk(b *testing.B, c *fakecloud.Cloud) string {
	b.Helper()
	block := make([]byte, 1<<20)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(block)
	ln, err := c.ListenInVPC(net.JoinHostPort(c.ServiceIP, "0"))
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "n must be a byte count", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for off := int64(0); n > 0; {
			k := min(n, 256<<10, int64(len(block))-off)
			if _, err := w.Write(block[off : off+k]); err != nil {
				return
			}
			n -= k
			off = (off + k) % int64(len(block))
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// waitPool waits until this process has want established TCP connections to
// sshAddr: the tunnel's pool fills in the background after Open, and the
// parallel benchmarks need every pool connection.
func waitPool(b *testing.B, sshAddr string, want int) {
	b.Helper()
	deadline := time.Now().Add(15 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		out, err := exec.Command("ss", "-Htn", "state", "established", "dst", sshAddr).Output()
		if err != nil {
			b.Logf("ss: %v (not waiting for the pool)", err)
			return
		}
		n = len(strings.Split(strings.TrimSpace(string(out)), "\n"))
		if strings.TrimSpace(string(out)) == "" {
			n = 0
		}
		if n >= want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Logf("tunnel pool: %d of %d connections after 15s", n, want)
}
