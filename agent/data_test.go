package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-dev/tether/internal/agentproto"
	"github.com/tether-dev/tether/internal/mux"
	sshplugin "github.com/tether-dev/tether/plugins/ssh"
)

// startData runs ServeData on loopback with a random token.
func startData(t *testing.T) (addr string, token []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	token = make([]byte, agentproto.TokenSize)
	rand.Read(token)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeData(ctx, ln, DataConfig{Token: token}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeData: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("ServeData did not return")
		}
		checkNoLeaks(t)
	})
	return ln.Addr().String(), token
}

func dataSession(t *testing.T, addr string, token []byte) (*mux.Session, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := agentproto.WriteHello(c, token); err != nil {
		c.Close()
		return nil, err
	}
	ver, err := agentproto.ReadAnswer(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	if ver != agentproto.Describe(agentproto.Version) {
		t.Errorf("agent describes itself as %q", ver)
	}
	s := mux.Client(c, mux.Config{})
	t.Cleanup(func() { s.Close() })
	return s, nil
}

func TestDataPort(t *testing.T) {
	addr, token := startData(t)
	echo := echoServer(t)
	s, err := dataSession(t, addr, token)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, _, err := s.Open(ctx, []byte(echo))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, st, 4<<20)
	st.Close()

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	_, _, err = s.Open(ctx, []byte(closed))
	var re *mux.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("closed port: %v", err)
	}
	if r, text := agentproto.ParseDialRefusal(re.Message); r != agentproto.ReasonRefused || text != msgRefused {
		t.Fatalf("closed port: reason %c %q", r, text)
	}
}

func TestDataPortWrongToken(t *testing.T) {
	addr, token := startData(t)
	bad := append([]byte(nil), token...)
	bad[0] ^= 1
	if _, err := dataSession(t, addr, bad); !errors.Is(err, agentproto.ErrRefused) {
		t.Fatalf("wrong token: %v", err)
	}
	// Not a data stream at all: the agent hangs up.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\nHost: example.internal\r\nAccept: */*\r\n\r\n"))
	if _, err := agentproto.ReadAnswer(c); !errors.Is(err, agentproto.ErrRefused) {
		t.Fatalf("HTTP request: %v", err)
	}
}

func TestDataTokenRequest(t *testing.T) {
	token := make([]byte, agentproto.TokenSize)
	rand.Read(token)
	ts := startServer(t, SSHServerConfig{Requests: map[string]func([]byte) (bool, []byte){
		agentproto.DataTokenRequest: DataTokenHandler(token, "v1 (protocol 1)", "pod-1"),
	}})
	c := ts.mustDial(t)
	ok, reply, err := c.SendRequest(agentproto.DataTokenRequest, true, nil)
	if err != nil || !ok {
		t.Fatalf("request: ok=%v err=%v", ok, err)
	}
	var r agentproto.TokenReply
	if err := ssh.Unmarshal(reply, &r); err != nil {
		t.Fatal(err)
	}
	if r.Token != string(token) || r.Hostname != "pod-1" || r.Version != "v1 (protocol 1)" {
		t.Fatalf("reply %+v", r)
	}
}

// TestSSHPluginInMemoryKeys: the SSH tunnel with an in-memory client key and
// a pinned host key (no files, as the Kubernetes transport uses it), and a
// global request through it.
func TestSSHPluginInMemoryKeys(t *testing.T) {
	token := make([]byte, agentproto.TokenSize)
	rand.Read(token)
	ts := startServer(t, SSHServerConfig{Requests: map[string]func([]byte) (bool, []byte){
		agentproto.DataTokenRequest: DataTokenHandler(token, "v", "h"),
	}})
	host, portStr, _ := net.SplitHostPort(ts.addr)
	port, _ := strconv.Atoi(portStr)
	open := func(hostKey ssh.PublicKey) (*sshplugin.Tunnel, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return sshplugin.Open(ctx, sshplugin.Config{
			Host: host, Port: port, User: "tether",
			Signers:        []ssh.Signer{ts.client},
			HostKey:        hostKey,
			KnownHostsFile: filepath.Join(t.TempDir(), "absent"),
			SSHConfigFile:  "none",
			Agent:          sshplugin.AgentOff,
			PoolSize:       1,
		})
	}
	other, _ := newSigner(t)
	if tun, err := open(other.PublicKey()); err == nil {
		tun.Close()
		t.Fatal("connected with a wrong pinned host key")
	}
	tun, err := open(ts.hostKey.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok, reply, err := tun.SendRequest(ctx, agentproto.DataTokenRequest, nil)
	var r agentproto.TokenReply
	if err != nil || !ok || ssh.Unmarshal(reply, &r) != nil || r.Token != string(token) {
		t.Fatalf("request: ok=%v err=%v reply=%+v", ok, err, r)
	}
	if ok, _, err := tun.SendRequest(ctx, "unknown@tether.dev", nil); ok || err != nil {
		t.Fatalf("unknown request: ok=%v err=%v", ok, err)
	}
}
