package calls

import (
	"runtime"
	"testing"
)

// BenchmarkCalls10k reads 10,000 calls (one keep-alive connection, typical
// headers, a traceparent) into a Ring of 4096, as a launch session keeps
// them, and reports the heap in use after 10k and after 100k calls: the
// ring bounds it, so both are about the same.
func BenchmarkCalls10k(b *testing.B) {
	reqHead := []byte("GET /orders/12345?expand=items HTTP/1.1\r\nHost: orders.vpc.internal\r\nUser-Agent: Java/17\r\n" +
		"Accept: application/json\r\nAuthorization: Bearer abcdefghijklmnopqrstuvwxyz\r\n" +
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n")
	respHead := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 512\r\nDate: Wed, 02 Dec 2026 01:00:00 GMT\r\n\r\n")
	body := make([]byte, 512)
	heap := func() float64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc) / (1 << 20)
	}
	run := func(r *Ring, n int) {
		c := NewConn(Info{Target: "orders.vpc.internal:80"}, r.Add)
		for range n {
			c.Requests().Write(reqHead)
			c.Responses().Write(respHead)
			c.Responses().Write(body)
		}
		c.End()
	}
	base := heap()
	var after10k, after100k float64
	for range b.N {
		r := NewRing(4096)
		run(r, 10_000)
		after10k = heap() - base
		run(r, 90_000)
		after100k = heap() - base
		if got, _ := r.Last(0, nil); len(got) != 4096 {
			b.Fatalf("ring holds %d", len(got))
		}
		runtime.KeepAlive(r)
	}
	b.ReportMetric(after10k, "heapMiB_10k")
	b.ReportMetric(after100k, "heapMiB_100k")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100_000), "ns/call")
	if after100k > 2*after10k+1 {
		b.Errorf("heap grew from %.1f MiB (10k calls) to %.1f MiB (100k): not bounded", after10k, after100k)
	}
}

// BenchmarkCall is the cost of reading one call (request, response head, 512-byte body).
func BenchmarkCall(b *testing.B) {
	reqHead := []byte("GET /orders/12345?expand=items HTTP/1.1\r\nHost: orders.vpc.internal\r\nUser-Agent: Java/17\r\n" +
		"Accept: application/json\r\nAuthorization: Bearer abcdefghijklmnopqrstuvwxyz\r\n" +
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n")
	respHead := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 512\r\nDate: Wed, 02 Dec 2026 01:00:00 GMT\r\n\r\n")
	body := make([]byte, 512)
	r := NewRing(4096)
	c := NewConn(Info{Target: "orders.vpc.internal:80"}, r.Add)
	b.ReportAllocs()
	for b.Loop() {
		c.Requests().Write(reqHead)
		c.Responses().Write(respHead)
		c.Responses().Write(body)
	}
}
