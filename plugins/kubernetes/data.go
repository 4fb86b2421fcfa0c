package kubernetes

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-dev/tether/internal/agentproto"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/internal/mux"
	"github.com/tether-dev/tether/tunnel"
)

// The data path: Dial's streams do not ride SSH channels (x/crypto/ssh's
// fixed 2 MiB window limits one connection to 2 MiB per round trip of the
// API server path, ~0.3x kubectl port-forward). Instead a few port-forward
// connections go to the agent's data port (loopback in the pod), each
// authenticated with the token the agent hands out over the SSH connection
// (agentproto.DataTokenRequest) and carrying a mux session with 16 MiB
// windows per stream. SSH stays for authentication, reverse listeners and
// health; an agent without a data port gets SSH channels.

// dataRetry is how long the data path is left alone after it failed (Dial
// uses SSH channels meanwhile).
const dataRetry = 5 * time.Second

// dataWait bounds how long a dial waits for a data session being opened.
const dataWait = time.Second

type dataPath struct {
	t    *Tunnel
	size int // sessions (port-forward connections) per pod

	mu          sync.Mutex
	sessions    []*dataSession
	dialing     int
	changed     chan struct{} // closed and replaced when sessions or dialing change
	failedUntil time.Time     // after a failure: SSH until then
	lastErr     error
	closed      bool

	tokenMu sync.Mutex
	token   []byte
	tokPod  string // pod the token is for
	version string // the agent's description
	noData  string // pod whose agent has no data port
}

type dataSession struct {
	s   *mux.Session
	pod string
}

func newDataPath(t *Tunnel) *dataPath {
	return &dataPath{t: t, size: t.cfg.PoolSize, changed: make(chan struct{})}
}

var errNoDataPort = errors.New("the agent has no data port")

// warm opens the sessions in the background right after Open, so that the
// first dials find them ready.
func (d *dataPath) warm() {
	ctx, cancel := context.WithTimeout(d.t.ctx, 30*time.Second)
	defer cancel()
	pod, err := d.t.currentPod(ctx)
	if err != nil {
		return
	}
	d.mu.Lock()
	n := d.size - len(d.sessions) - d.dialing
	d.dialing += max(n, 0)
	d.mu.Unlock()
	for range max(n, 0) {
		d.t.wg.Go(func() { d.grow(pod) })
	}
}

// grow opens one more session to pod (d.dialing was counted by the caller).
func (d *dataPath) grow(pod string) {
	ctx, cancel := context.WithTimeout(d.t.ctx, 30*time.Second)
	defer cancel()
	ds, err := d.open(ctx, pod)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dialing--
	defer d.broadcastLocked()
	if err != nil {
		if d.t.ctx.Err() == nil && !errors.Is(err, errNoDataPort) {
			d.t.cfg.Logger.Warn("data port: using SSH channels for a while", "pod", pod, "err", err)
		}
		d.failedUntil = time.Now().Add(dataRetry)
		d.lastErr = err
		return
	}
	if d.closed {
		ds.s.Close()
		return
	}
	d.sessions = append(d.sessions, ds)
}

func (d *dataPath) broadcastLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// open makes a session: the token (over SSH), a port-forward connection to
// the data port, the handshake, the mux client.
func (d *dataPath) open(ctx context.Context, pod string) (*dataSession, error) {
	for attempt := 0; ; attempt++ {
		token, err := d.tokenFor(ctx, pod, attempt > 0)
		if err != nil {
			return nil, err
		}
		hello := append([]byte(agentproto.DataMagic), token...)
		pc, err := d.t.pf.dial(ctx, pod, agentproto.DataPort, hello)
		if err != nil {
			return nil, err
		}
		ver, err := agentproto.ReadAnswer(pc)
		if err != nil {
			pc.Close()
			if errors.Is(err, agentproto.ErrRefused) && attempt == 0 {
				continue // a token of the previous pod: ask again
			}
			return nil, err
		}
		d.t.cfg.Logger.Debug("data session", "pod", pod, "agent", ver)
		return &dataSession{s: mux.Client(pc, mux.Config{}), pod: pod}, nil
	}
}

// tokenFor returns the data token of pod's agent, asking it over SSH when
// needed (the SSH pool connects to the current pod).
func (d *dataPath) tokenFor(ctx context.Context, pod string, refresh bool) ([]byte, error) {
	d.tokenMu.Lock()
	defer d.tokenMu.Unlock()
	if d.noData == pod {
		return nil, errNoDataPort
	}
	if d.tokPod == pod && !refresh {
		return d.token, nil
	}
	ok, reply, err := d.t.ssh.SendRequest(ctx, agentproto.DataTokenRequest, nil)
	if err != nil {
		return nil, err
	}
	if !ok {
		d.noData = pod
		d.t.cfg.Logger.Info("the agent has no data port (older image?): streams use SSH channels", "pod", pod)
		return nil, errNoDataPort
	}
	var r agentproto.TokenReply
	if err := ssh.Unmarshal(reply, &r); err != nil || len(r.Token) != agentproto.TokenSize {
		return nil, errcat.Environment.Newf("data token: bad reply (%v)", err)
	}
	// The host name is the pod name, cut to 63 characters.
	if r.Hostname == "" || !strings.HasPrefix(pod, r.Hostname) {
		return nil, errcat.Environment.Newf("data token: from agent %q, not %q (pod being replaced)", r.Hostname, pod)
	}
	d.token, d.tokPod, d.version = []byte(r.Token), pod, r.Version
	return d.token, nil
}

// pick returns the session of pod with the fewest streams, opening more
// (in the background) while there are fewer than d.size. It returns nil
// when the data path is not usable now, or no session got ready within
// dataWait (the first dials after Open or a pod change then take SSH).
func (d *dataPath) pick(ctx context.Context, pod string) *mux.Session {
	timeout := time.NewTimer(dataWait)
	defer timeout.Stop()
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return nil
		}
		live := d.sessions[:0]
		for _, ds := range d.sessions {
			select {
			case <-ds.s.Done():
				continue
			default:
			}
			if ds.pod != pod {
				go ds.s.Close()
				continue
			}
			live = append(live, ds)
		}
		clear(d.sessions[len(live):])
		d.sessions = live
		var best *mux.Session
		bestN := 0
		for _, ds := range live {
			if n := ds.s.NumStreams(); best == nil || n < bestN {
				best, bestN = ds.s, n
			}
		}
		failing := time.Now().Before(d.failedUntil)
		if !failing && len(live)+d.dialing < d.size && (best == nil || bestN > 0) {
			d.dialing++
			d.t.wg.Go(func() { d.grow(pod) })
		}
		if best != nil || failing || d.dialing == 0 {
			d.mu.Unlock()
			return best
		}
		changed := d.changed
		d.mu.Unlock()
		select {
		case <-changed:
		case <-timeout.C:
			return nil
		case <-ctx.Done():
			return nil
		case <-d.t.ctx.Done():
			return nil
		}
	}
}

// dial opens a stream over the data path. ok is false when the data path
// cannot be used now: the caller dials over SSH instead.
func (d *dataPath) dial(ctx context.Context, network, address string) (c net.Conn, err error, ok bool) {
	if d == nil {
		return nil, nil, false
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, nil, false
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil || host == "" {
		return nil, nil, false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, nil, false
	}
	pod := d.t.podName()
	if pod == "" {
		return nil, nil, false // being replaced: SSH waits for the new pod
	}
	for range 2 {
		s := d.pick(ctx, pod)
		if s == nil {
			return nil, nil, false
		}
		st, _, err := s.Open(ctx, []byte(address))
		if err == nil {
			return st, nil, true
		}
		var re *mux.RefusedError
		if errors.As(err, &re) {
			reason, text := agentproto.ParseDialRefusal(re.Message)
			return nil, &tunnel.DialError{Address: address, Reason: dialReason(reason), Side: d.t.side, Err: errcat.Environment.New(text)}, true
		}
		if ctx.Err() != nil {
			return nil, &tunnel.DialError{Address: address, Reason: tunnel.Unreachable, Side: d.t.side, Err: errcat.Environment.Newf("no answer before %w", ctx.Err())}, true
		}
		// The session died under us: try another one.
	}
	return nil, nil, false
}

func dialReason(r byte) tunnel.Reason {
	switch r {
	case agentproto.ReasonRefused:
		return tunnel.Refused
	case agentproto.ReasonNoSuchHost:
		return tunnel.NoSuchHost
	case agentproto.ReasonUnreachable:
		return tunnel.Unreachable
	}
	return tunnel.Other
}

// close ends every session (the tunnel's goroutines are waited for by
// Tunnel.Close).
func (d *dataPath) close() {
	d.mu.Lock()
	d.closed = true
	ss := d.sessions
	d.sessions = nil
	d.broadcastLocked()
	d.mu.Unlock()
	for _, ds := range ss {
		ds.s.Close()
	}
}

// DataAgent is the description of the agent that serves the data port
// ("VERSION (protocol N)"), "" while streams use SSH channels.
func (t *Tunnel) DataAgent() string {
	if t.data == nil {
		return ""
	}
	t.data.tokenMu.Lock()
	defer t.data.tokenMu.Unlock()
	if t.data.tokPod == "" || t.data.tokPod != t.podName() {
		return ""
	}
	return t.data.version
}
