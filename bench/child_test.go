package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime/debug"
	"testing"
	"time"

	"github.com/tether-dev/tether/calls"
	"github.com/tether-dev/tether/channel"
	"github.com/tether-dev/tether/internal/routes"
	"github.com/tether-dev/tether/plugins/ssh"
)

// The Tether proxy normally runs in a child process (this test binary,
// re-executed): like `ssh -D`, and like the real tether, it then has its own
// CPU and Go scheduler instead of sharing them with the benchmark's client
// and bulk server. -inproc runs it inside the benchmark process instead.

const childEnv = "TETHER_BENCH_CHILD"

type childConfig struct {
	Host, User, Identity, KnownHosts string
	Port                             int
	CIDR                             string // routed through the tunnel
	Calls                            bool   // read the HTTP calls (channel.Config.OnCall) into a ring, as a launch does
}

type childReady struct {
	Addr, User, Pass string
	Err              string
}

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		// The same collector settings as cmd/tether (tuneGC).
		debug.SetGCPercent(400)
		debug.SetMemoryLimit(256 << 20)
		os.Exit(runChild(cfg))
	}
	os.Exit(m.Run())
}

// runChild runs the Tether proxy until stdin closes.
func runChild(cfgJSON string) int {
	out := json.NewEncoder(os.Stdout)
	var cfg childConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		out.Encode(childReady{Err: err.Error()})
		return 1
	}
	ch, closeAll, err := startTether(cfg)
	if err != nil {
		out.Encode(childReady{Err: err.Error()})
		return 1
	}
	out.Encode(childReady{Addr: ch.SOCKSAddr(), User: ch.Username(), Pass: ch.Password()})
	io.Copy(io.Discard, os.Stdin)
	closeAll()
	return 0
}

// startTether opens the tunnel and starts the channel in front of it.
func startTether(cfg childConfig) (*channel.Channel, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := ssh.Open(ctx, ssh.Config{
		Host:           cfg.Host,
		Port:           cfg.Port,
		User:           cfg.User,
		IdentityFiles:  []string{cfg.Identity},
		KnownHostsFile: cfg.KnownHosts,
		SSHConfigFile:  "none",
		Agent:          ssh.AgentOff,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("ssh.Open: %w", err)
	}
	chCfg := channel.Config{
		Tunnel: tun,
		Routes: routes.Routes{CIDRs: []netip.Prefix{netip.MustParsePrefix(cfg.CIDR)}},
	}
	if cfg.Calls {
		chCfg.OnCall = calls.NewRing(4096).Add
	}
	ch, err := channel.Start(context.Background(), chCfg)
	if err != nil {
		tun.Close()
		return nil, nil, fmt.Errorf("channel.Start: %w", err)
	}
	return ch, func() { ch.Close(); tun.Close() }, nil
}

// startTetherChild starts the proxy in a child process, stopped by PID in
// cleanup.
func startTetherChild(b *testing.B, cfg childConfig) proxy {
	b.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	b.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	var ready childReady
	err = json.NewDecoder(bufio.NewReader(stdout)).Decode(&ready)
	go func() { io.Copy(io.Discard, stdout); cmd.Wait(); close(exited) }()
	if err != nil {
		b.Fatalf("tether child: %v", err)
	}
	if ready.Err != "" {
		b.Fatalf("tether child: %s", ready.Err)
	}
	return proxy{name: "tether", addr: ready.Addr, user: ready.User, pass: ready.Pass, pid: cmd.Process.Pid}
}
