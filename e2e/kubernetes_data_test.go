package e2e

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/agentproto"
	"github.com/tether-dev/tether/plugins/kubernetes"
	"github.com/tether-dev/tether/tunnel"
)

// TestKubernetesDataPort: Dial's streams use the agent's data port (the
// agent reports its version in the token reply), they half-close like TCP,
// and the data port is not reachable at the pod IP from the cluster.
func TestKubernetesDataPort(t *testing.T) {
	e := setupK8s(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tun, err := kubernetes.Open(ctx, kubernetes.Config{Kubeconfig: e.tb.Kubeconfig, Namespace: k8sNS, Session: randSession("data-")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tun.Close() })

	// The data path comes up in the background: poll.
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := tun.Dial(ctx, "tcp", net.JoinHostPort(e.podIP, "8080"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := httpGetVia(c, e.podIP); err != nil {
			t.Fatal(err)
		}
		if tun.DataAgent() != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("streams never used the data port")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if want := "(protocol " + strconv.Itoa(agentproto.Protocol) + ")"; !strings.HasSuffix(tun.DataAgent(), want) {
		t.Errorf("agent %q, want the suffix %q", tun.DataAgent(), want)
	}

	// Half-close: the request goes out with EOF and the answer still comes back.
	c, err := tun.Dial(ctx, "tcp", net.JoinHostPort(e.podIP, "8080"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "GET / HTTP/1.0\r\nHost: orders\r\n\r\n")
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	c.Close()
	if err != nil || !strings.HasPrefix(string(b), "HTTP/1.0 200") {
		t.Fatalf("after half-close: %q, %v", b, err)
	}

	// Refused targets are dial errors, as over SSH.
	if _, err := tun.Dial(ctx, "tcp", net.JoinHostPort(e.podIP, "1")); tunnel.ReasonOf(err) != tunnel.Refused {
		t.Errorf("closed port: %v (reason %s)", err, tunnel.ReasonOf(err))
	}
	// The data port listens on the pod's loopback only: from the cluster
	// (here: from the agent pod itself, at its pod IP) it is closed.
	agentIP := tun.PodIP()
	if _, err := tun.Dial(ctx, "tcp", net.JoinHostPort(agentIP, strconv.Itoa(agentproto.DataPort))); tunnel.ReasonOf(err) != tunnel.Refused {
		t.Errorf("data port at the pod IP: %v (reason %s), want refused", err, tunnel.ReasonOf(err))
	}
}
