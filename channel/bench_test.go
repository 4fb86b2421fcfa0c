package channel

import (
	"context"
	"io"
	"net"
	"strconv"
	"testing"
)

// BenchmarkSOCKSConnect measures a whole SOCKS5 connection: handshake,
// tunnel dial, one echoed byte, close.
func BenchmarkSOCKSConnect(b *testing.B) {
	c, _, _ := startChannel(b, nil)
	port, _ := strconv.Atoi(startEcho(b))
	b.ReportAllocs()
	for b.Loop() {
		conn, rep := socksOpen(b, c, "echo.vpc.internal", uint16(port))
		if rep != 0 {
			b.Fatalf("reply %d", rep)
		}
		conn.Write([]byte{1})
		var x [1]byte
		io.ReadFull(conn, x[:])
		conn.Close()
	}
}

// BenchmarkSOCKSRoundTrip measures the latency the channel adds to one small
// request/response on an open connection.
func BenchmarkSOCKSRoundTrip(b *testing.B) {
	c, _, _ := startChannel(b, nil)
	port := startEcho(b)
	conn, err := socksDialer(b, c).DialContext(context.Background(), "tcp", "echo.vpc.internal:"+port)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 64)
	for b.Loop() {
		conn.Write(buf)
		io.ReadFull(conn, buf)
	}
}

// BenchmarkSOCKSThroughput measures bulk transfer through the channel.
func BenchmarkSOCKSThroughput(b *testing.B) {
	for _, route := range []string{"tunnel", "direct"} {
		b.Run(route, func(b *testing.B) {
			c, _, _ := startChannel(b, nil)
			port := startEcho(b)
			host := "echo.vpc.internal"
			if route == "direct" {
				host = "127.0.0.1"
			}
			conn, err := socksDialer(b, c).DialContext(context.Background(), "tcp", net.JoinHostPort(host, port))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			chunk := make([]byte, 1<<20)
			b.SetBytes(int64(len(chunk)))
			go func() {
				for range b.N {
					conn.Write(chunk)
				}
			}()
			rbuf := make([]byte, len(chunk))
			for range b.N {
				io.ReadFull(conn, rbuf)
			}
		})
	}
}
