package fakecloud

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/tether-dev/tether/internal/connset"
)

// PseudoRandom returns the n bytes that GET /bytes?n=N serves, so that tests
// can compute the expected checksum locally.
func PseudoRandom(n int64) io.Reader {
	var seed [32]byte
	copy(seed[:], "tether fakecloud bytes, v1......")
	return io.LimitReader(rand.NewChaCha8(seed), n)
}

func (c *Cloud) startServices() error {
	c.HTTPBody = fmt.Sprintf("hello from %s (%s)\n", c.HTTPName, c.Name)
	ln, err := listenIn(c.VPCNS, net.JoinHostPort(c.ServiceIP, "80"))
	if err != nil {
		return err
	}
	c.HTTPAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, c.HTTPBody)
	})
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "n must be a byte count", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := make([]byte, 256<<10)
		_, _ = io.CopyBuffer(w, PseudoRandom(n), buf)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	c.addCloser(func() { srv.Close() })

	eln, err := listenIn(c.VPCNS, net.JoinHostPort(c.ServiceIP, "7"))
	if err != nil {
		return err
	}
	c.EchoAddr = eln.Addr().String()
	c.addCloser(serveEcho(eln))

	// Find a port where nothing listens: bind, note it, close.
	cln, err := listenIn(c.VPCNS, net.JoinHostPort(c.ServiceIP, "0"))
	if err != nil {
		return err
	}
	c.ClosedAddr = cln.Addr().String()
	cln.Close()
	return nil
}

// serveEcho echoes every connection on ln; the returned func stops it and
// waits for the connection goroutines.
func serveEcho(ln net.Listener) func() {
	var (
		conns connset.Set
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if !conns.Add(conn) {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(conn, conn)
				conn.Close()
				conns.Remove(conn)
			}()
		}
	}()
	return func() {
		ln.Close()
		conns.CloseAll()
		wg.Wait()
	}
}
