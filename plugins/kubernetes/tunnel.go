package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"golang.org/x/crypto/ssh"

	"github.com/tether-dev/tether/internal/agentproto"
	"github.com/tether-dev/tether/internal/errcat"
	sshplugin "github.com/tether-dev/tether/plugins/ssh"
	"github.com/tether-dev/tether/tunnel"
)

// Tunnel is a tunnel.Tunnel through a temporary agent pod.
type Tunnel struct {
	cfg  Config
	c    *cluster
	pf   *pfDialer
	ssh  *sshplugin.Tunnel
	data *dataPath
	side string

	authorizedKey string
	hostKeyPEM    string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pod     string        // current agent pod ("" while none is ready)
	podIP   string        // its IP
	ready   chan struct{} // closed when pod becomes ready; replaced when it goes
	pods    []agentRef    // every agent this tunnel created (deleted on Close)
	lastErr error
	kick    chan struct{} // ask the supervisor to check the pod now
}

var _ tunnel.Tunnel = (*Tunnel)(nil)

// Open creates the agent pod, waits for it, and opens the SSH tunnel over
// port-forward streams to it. The pod is deleted by Close; if this process
// dies the agent exits after Config.IdleExit without a client.
func Open(ctx context.Context, cfg Config) (*Tunnel, error) {
	cfg.defaults()
	if cfg.Session == "" {
		cfg.Session = newSession()
	}
	c, err := connect(cfg)
	if err != nil {
		return nil, err
	}
	pf, err := newPFDialer(c, cfg.PortForward)
	if err != nil {
		return nil, err
	}
	t := &Tunnel{cfg: cfg, c: c, pf: pf, ready: make(chan struct{}), kick: make(chan struct{}, 1)}
	t.side = fmt.Sprintf("the agent pod in namespace %s", c.namespace)
	if c.context != "" {
		t.side += " (context " + c.context + ")"
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			t.Close()
		}
	}()

	// Per-session keys, made on the laptop and kept in memory: the client
	// key never leaves this process; the host key is given to the pod, so
	// its public half is pinned here before the first connection (no trust
	// on first use, no known_hosts file).
	clientSigner, _, err := agentproto.NewKey("tether-" + cfg.Session)
	if err != nil {
		return nil, err
	}
	hostSigner, hostPEM, err := agentproto.NewKey("tether-agent-" + cfg.Session)
	if err != nil {
		return nil, err
	}
	t.authorizedKey = string(ssh.MarshalAuthorizedKey(clientSigner.PublicKey()))
	t.hostKeyPEM = string(hostPEM)
	alias := "tether-agent." + labelValue(cfg.Session)

	// Leftovers of earlier sessions of this user (never anyone else's).
	go func() {
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if gone, err := Clean(cctx, cfg, false); err == nil && len(gone) > 0 {
			cfg.Logger.Info("removed leftover agent pods", "pods", gone)
		}
	}()

	start := time.Now()
	if err := t.startPod(ctx); err != nil {
		return nil, err
	}
	cfg.Logger.Info("agent pod ready", "pod", t.pod, "took", time.Since(start))
	t.wg.Add(1)
	go t.supervise()

	t.ssh, err = sshplugin.Open(ctx, sshplugin.Config{
		Host:                  alias,
		Port:                  22,
		User:                  "tether",
		Signers:               []ssh.Signer{clientSigner},
		HostKey:               hostSigner.PublicKey(),
		StrictHostKeyChecking: sshplugin.StrictYes,
		Agent:                 sshplugin.AgentOff,
		SSHConfigFile:         "none",
		PoolSize:              cfg.PoolSize,
		Progress:              cfg.Progress,
		Dial:                  t.dialAgent,
	})
	if err != nil {
		return nil, errcat.Environment.Newf("kubernetes: SSH to the agent pod %s/%s: %w", c.namespace, t.pod, err)
	}
	cfg.progress("Connected to the agent pod %s/%s through the API server (%s)", c.namespace, t.podName(), t.Protocol())
	if !cfg.SSHChannelsOnly {
		t.data = newDataPath(t)
		t.wg.Go(t.data.warm)
	}
	ok = true
	return t, nil
}

// Protocol is the port-forward protocol of the last connection: "websocket"
// or "spdy".
func (t *Tunnel) Protocol() string {
	p, _ := t.pf.protocol.Load().(string)
	return p
}

// Pod returns the namespace and name of the current agent pod ("" while
// it is being replaced).
func (t *Tunnel) Pod() (namespace, name string) {
	return t.c.namespace, t.podName()
}

// PodIP is the current agent pod's IP.
func (t *Tunnel) PodIP() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.podIP
}

// Session is the session label value.
func (t *Tunnel) Session() string { return labelValue(t.cfg.Session) }

func (t *Tunnel) podName() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pod
}

// startPod creates a pod and waits until it runs.
func (t *Tunnel) startPod(ctx context.Context) error {
	t.cfg.progress("Creating the agent pod in namespace %s (image %s)", t.c.namespace, t.cfg.Image)
	a, err := t.c.createAgent(ctx, &t.cfg, podSpec(&t.cfg, t.authorizedKey, t.hostKeyPEM))
	if a.job != "" || a.pod != "" {
		t.mu.Lock()
		t.pods = append(t.pods, a)
		t.mu.Unlock()
	}
	if err != nil {
		if a.job != "" {
			t.deleteAgent(a.pod)
		}
		return fmt.Errorf("creating the agent pod in namespace %s: %w", t.c.namespace, explain(err))
	}
	if t.ctx.Err() != nil {
		return errTunnelClosed
	}
	t.cfg.progress("Waiting for the agent pod %s/%s", t.c.namespace, a.pod)
	rp, err := t.c.waitReady(ctx, &t.cfg, a.pod)
	if err != nil {
		t.deleteAgent(a.pod)
		return err
	}
	t.mu.Lock()
	t.pod, t.podIP = rp.Name, rp.Status.PodIP
	close(t.ready)
	t.mu.Unlock()
	return nil
}

var errTunnelClosed = errcat.Environment.New("kubernetes: tunnel closed")

// deleteAgent deletes the agent (Job and pod) whose pod is name and forgets
// it.
func (t *Tunnel) deleteAgent(name string) {
	t.mu.Lock()
	a := agentRef{pod: name}
	for i, p := range t.pods {
		if p.pod == name {
			a = p
			t.pods = append(t.pods[:i], t.pods[i+1:]...)
			break
		}
	}
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.c.deleteAgent(ctx, a); err != nil {
		t.cfg.Logger.Warn("deleting the agent pod", "pod", name, "job", a.job, "err", err)
	}
}

// currentPod waits (bounded by ctx) for a ready agent pod.
func (t *Tunnel) currentPod(ctx context.Context) (string, error) {
	for {
		t.mu.Lock()
		pod, ready, lastErr := t.pod, t.ready, t.lastErr
		t.mu.Unlock()
		if pod != "" {
			return pod, nil
		}
		select {
		case <-ready:
		case <-t.ctx.Done():
			return "", errTunnelClosed
		case <-ctx.Done():
			if lastErr != nil {
				return "", errcat.Environment.Newf("no agent pod: %w", lastErr)
			}
			return "", errcat.Environment.Newf("waiting for the agent pod: %w", ctx.Err())
		}
	}
}

// dialAgent is the SSH tunnel's Dial: a fresh port-forward connection to
// the current pod's SSH port. Retries briefly while the agent starts up.
func (t *Tunnel) dialAgent(ctx context.Context) (net.Conn, error) {
	var last error
	for attempt := 0; ; attempt++ {
		pod, err := t.currentPod(ctx)
		if err != nil {
			return nil, err
		}
		c, err := t.pf.dial(ctx, pod, agentproto.SSHPort, nil)
		if err == nil {
			return c, nil
		}
		last = err
		t.cfg.Logger.Debug("port-forward failed", "pod", pod, "err", err)
		select {
		case t.kick <- struct{}{}: // let the supervisor check the pod
		default:
		}
		select {
		case <-ctx.Done():
			return nil, last
		case <-t.ctx.Done():
			return nil, errTunnelClosed
		case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)):
		}
	}
}

// supervise checks the agent pod every second (and when a port-forward
// fails) and replaces it when it is gone, ending or being deleted.
func (t *Tunnel) supervise() {
	defer t.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	backoff := time.Second
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
		case <-t.kick:
		}
		name := t.podName()
		if name == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(t.ctx, 3*time.Second)
		p, err := t.c.client.CoreV1().Pods(t.c.namespace).Get(ctx, name, metav1.GetOptions{})
		cancel()
		why := ""
		switch {
		case apierrors.IsNotFound(err):
			why = "was deleted"
		case err != nil:
			continue // API server hiccup: the SSH keepalive judges the data path
		case p.DeletionTimestamp != nil:
			why = "is being deleted"
		case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
			why = "ended (" + string(p.Status.Phase) + ")"
		}
		if why == "" {
			continue
		}
		t.cfg.progress("Agent pod %s/%s %s: starting a new one", t.c.namespace, name, why)
		t.cfg.Logger.Warn("agent pod gone, replacing it", "pod", name, "why", why)
		t.mu.Lock()
		t.pod, t.podIP = "", ""
		t.ready = make(chan struct{})
		t.lastErr = fmt.Errorf("agent pod %s %s", name, why)
		t.mu.Unlock()
		t.deleteAgent(name)
		for t.ctx.Err() == nil {
			sctx, cancel := context.WithTimeout(t.ctx, t.cfg.ReadyTimeout+10*time.Second)
			err := t.startPod(sctx)
			cancel()
			if err == nil {
				backoff = time.Second
				t.cfg.progress("New agent pod %s/%s ready", t.c.namespace, t.podName())
				break
			}
			if t.ctx.Err() != nil {
				return
			}
			t.mu.Lock()
			t.lastErr = err
			t.mu.Unlock()
			t.cfg.progress("Replacing the agent pod failed (retrying in %v): %v", backoff, err)
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	}
}

// Dial opens a stream to address from the agent pod; names are resolved
// there (the pod's resolv.conf: cluster DNS with its search path). Streams
// go over the data port (see data.go); over an SSH channel when the agent
// has none or it cannot be reached.
func (t *Tunnel) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if c, err, ok := t.data.dial(ctx, network, address); ok {
		return c, err
	}
	c, err := t.ssh.Dial(ctx, network, address)
	if err != nil {
		var de *tunnel.DialError
		if errors.As(err, &de) {
			d := *de
			d.Side = t.side
			return nil, &d
		}
	}
	return c, err
}

// Listen listens on the agent pod (reverse: cluster -> local). Reach it at
// the pod IP (PodIP) and the port of the listener's address.
func (t *Tunnel) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	return t.ssh.Listen(ctx, network, address)
}

// State reports the SSH tunnel's state.
func (t *Tunnel) State() tunnel.State {
	if t.ssh == nil {
		return tunnel.Closed
	}
	return t.ssh.State()
}

// Watch calls fn for every state change until cancel is called.
func (t *Tunnel) Watch(fn func(tunnel.Event)) func() { return t.ssh.Watch(fn) }

// Close closes the SSH tunnel and deletes every agent (Job and pod) this
// tunnel created.
func (t *Tunnel) Close() error {
	t.cancel()
	if t.data != nil {
		t.data.close()
	}
	if t.ssh != nil {
		t.ssh.Close()
	}
	t.wg.Wait()
	t.mu.Lock()
	pods := append([]agentRef(nil), t.pods...)
	t.pods = nil
	t.mu.Unlock()
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range pods {
		if err := t.c.deleteAgent(ctx, p); err != nil {
			errs = append(errs, errcat.Environment.Newf("deleting agent pod %s/%s: %w", t.c.namespace, p.pod, err))
		}
	}
	// A Job's pod keeps the Job controller's finalizer for a moment after
	// the delete: return once the cluster has nothing of this tunnel left.
	for _, p := range pods {
		t.c.waitPodGone(ctx, p.pod)
	}
	return errors.Join(errs...)
}
