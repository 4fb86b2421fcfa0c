package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-dev/tether/internal/agentproto"
	"github.com/tether-dev/tether/internal/mux"
	"github.com/tether-dev/tether/internal/relay"
)

// DataConfig configures ServeData.
type DataConfig struct {
	// Token is the secret every data connection must present
	// (agentproto.TokenSize bytes; handed to SSH clients by
	// DataTokenHandler).
	Token []byte
	// Dial connects the streams; nil = net.Dialer.
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *slog.Logger // nil = discard
}

// DataTokenHandler answers agentproto.DataTokenRequest on the SSH
// connection: the data token, the agent's version and host name. Only
// authenticated SSH clients can ask.
func DataTokenHandler(token []byte, version, hostname string) func([]byte) (bool, []byte) {
	reply := ssh.Marshal(agentproto.TokenReply{Token: string(token), Version: version, Hostname: hostname})
	return func([]byte) (bool, []byte) { return true, reply }
}

// ServeData serves the data port (Kubernetes transport): each connection
// passes the token handshake and then carries a mux session whose streams
// are dialled from here (the request is "host:port"). It returns when ctx
// is done (nil), closing the listener and every connection, or when the
// listener fails.
func ServeData(ctx context.Context, ln net.Listener, cfg DataConfig) error {
	if len(cfg.Token) != agentproto.TokenSize {
		ln.Close()
		return errors.New("agent: data port without a token")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	var (
		mu       sync.Mutex
		sessions = map[io.Closer]struct{}{}
		closed   bool
		wg       sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		closed = true
		for s := range sessions {
			s.Close()
		}
		mu.Unlock()
	})
	defer stop()
	track := func(c io.Closer, add bool) bool {
		mu.Lock()
		defer mu.Unlock()
		if !add {
			delete(sessions, c)
			return true
		}
		if closed {
			return false
		}
		sessions[c] = struct{}{}
		return true
	}
	var err error
	backoff := 5 * time.Millisecond
	for {
		c, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(aerr, net.ErrClosed) {
				err = fmt.Errorf("agent: data port: %w", aerr)
				break
			}
			time.Sleep(backoff)
			backoff = min(backoff*2, maxAcceptBackoff)
			continue
		}
		backoff = 5 * time.Millisecond
		if !track(c, true) {
			c.Close()
			break
		}
		wg.Go(func() {
			defer track(c, false)
			serveDataConn(ctx, c, cfg, log, track)
		})
	}
	ln.Close()
	mu.Lock()
	closed = true
	for s := range sessions {
		s.Close()
	}
	mu.Unlock()
	wg.Wait()
	return err
}

func serveDataConn(ctx context.Context, c net.Conn, cfg DataConfig, log *slog.Logger, track func(io.Closer, bool) bool) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := agentproto.ReadHello(c, cfg.Token); err != nil {
		log.Info("data connection refused", "err", err)
		agentproto.WriteAnswer(c, false, "refused")
		c.Close()
		return
	}
	if err := agentproto.WriteAnswer(c, true, agentproto.Describe(agentproto.Version)); err != nil {
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	var streams sync.WaitGroup
	s := mux.Server(c, mux.Config{Window: dataWindow}, func(st *mux.Stream, req []byte) {
		streams.Add(1)
		defer streams.Done()
		addr := string(req)
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		conn, err := cfg.Dial(dctx, "tcp", addr)
		cancel()
		if err != nil {
			_, msg := rejection(err)
			log.Debug("data dial failed", "addr", addr, "err", err, "reply", msg)
			st.Refuse(agentproto.DialRefusal(refusalReason(msg), msg))
			return
		}
		if err := st.Accept(nil); err != nil {
			conn.Close()
			st.Close()
			return
		}
		log.Debug("data stream", "addr", addr)
		pipeConns(st, conn)
	})
	if !track(s, true) {
		s.Close()
	}
	log.Debug("data connection", "remote", c.RemoteAddr().String())
	<-s.Done()
	track(s, false)
	s.Close()
	streams.Wait()
}

// dataWindow is the receive window of the agent's data streams (uploads):
// smaller than the laptop's, the pod's memory is limited.
const dataWindow = 4 << 20

func refusalReason(msg string) byte {
	switch msg {
	case msgRefused:
		return agentproto.ReasonRefused
	case msgNoSuchHost, msgDNSTemp:
		return agentproto.ReasonNoSuchHost
	case msgNoRoute, msgNetUnreach, msgTimedOut:
		return agentproto.ReasonUnreachable
	}
	return agentproto.ReasonOther
}

// pipeConns carries a mux stream to a connection both ways (package relay)
// in buffers of mux.MaxFrame, so that each read fills a frame.
func pipeConns(st *mux.Stream, conn net.Conn) {
	relay.Conns(st, conn, relay.BufferSize(mux.MaxFrame))
}
