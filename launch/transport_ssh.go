package launch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	sshplugin "github.com/tether-dev/tether/plugins/ssh"
	"github.com/tether-dev/tether/progress"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/workspace"
)

// ssh proxies: a proxy machine or bastion reached over SSH (optionally
// through jump hosts), plugins/ssh.

func init() { registerTransport(sshTransport{}) }

type sshTransport struct{}

func (sshTransport) Kind() string                        { return "ssh" }
func (sshTransport) Configured(px *workspace.Proxy) bool { return px.SSH != nil }
func (sshTransport) DefaultRoutes(context.Context, string, *workspace.Proxy, *slog.Logger) ([]string, []string) {
	return nil, nil // a proxy machine without routes carries everything
}

// Clean: a proxy machine keeps nothing of a session once its SSH
// connection is gone.
func (sshTransport) Clean(context.Context, string, *workspace.Proxy, bool) ([]string, error) {
	return nil, nil
}

func (sshTransport) Open(ctx context.Context, dir string, px *workspace.Proxy, h Hooks, report func(string)) (tunnel.Tunnel, error) {
	cfg := sshConfig(dir, px.SSH)
	cfg.Prompts = h.Prompts
	cfg.Progress = report
	progress.Report(ctx, "connecting to proxy %s (%s)", px.Name, px.SSH.Host)
	return sshplugin.Open(ctx, cfg)
}

// Test: TCP, host key, authentication, a test dial through the tunnel;
// without a target, the test dial goes to the proxy machine's own SSH
// address as seen from itself (it needs AllowTcpForwarding on the proxy
// machine).
func (sshTransport) Test(ctx context.Context, dir string, px *workspace.Proxy, prompts sshplugin.Prompts, target string) protocol.ProxyTestResult {
	res := protocol.ProxyTestResult{}
	step := func(name string, start time.Time, err error, okMsg string) bool {
		s := protocol.TestStep{Name: name, OK: err == nil, Message: okMsg, DurationMs: time.Since(start).Milliseconds()}
		if err != nil {
			s.Message = err.Error()
		}
		res.Steps = append(res.Steps, s)
		return err == nil
	}
	cfg := sshConfig(dir, px.SSH)
	cfg.Prompts = prompts
	cfg.PoolSize = 1
	port := px.SSH.Port
	if port == 0 {
		port = 22
	}
	addr := net.JoinHostPort(px.SSH.Host, strconv.Itoa(port))
	if target == "" {
		target = addr
	}
	progress.Report(ctx, "connecting to %s", addr)
	start := time.Now()
	if cfg.ProxyJump == "" {
		d := net.Dialer{Timeout: 10 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if !step("tcp", start, wrapTCP(addr, err), "reached "+addr) {
			return res
		}
		c.Close()
	}
	progress.Report(ctx, "checking host key and logging in")
	start = time.Now()
	t, err := sshplugin.Open(ctx, cfg)
	switch {
	case errors.Is(err, sshplugin.ErrHostKeyUnknown), errors.Is(err, sshplugin.ErrHostKeyChanged):
		step("hostKey", start, err, "")
		return res
	case errors.Is(err, sshplugin.ErrAuth):
		step("hostKey", start, nil, "host key verified")
		step("auth", start, err, "")
		return res
	case err != nil && cfg.ProxyJump != "":
		step("tcp", start, err, "")
		return res
	case err != nil:
		step("auth", start, err, "")
		return res
	}
	defer t.Close()
	if cfg.ProxyJump != "" {
		step("tcp", start, nil, "reached "+addr+" through "+cfg.ProxyJump)
	}
	step("hostKey", start, nil, "host key verified")
	step("auth", start, nil, "logged in")
	progress.Report(ctx, "test dial to %s", target)
	start = time.Now()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := t.Dial(dctx, "tcp", target)
	if err == nil {
		c.Close()
	}
	res.OK = step("dial", start, err, "the proxy machine reached "+target)
	return res
}

func wrapTCP(addr string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("proxy machine unreachable: %s: %v (check host, port, VPN and firewall)", addr, err)
}

func sshConfig(dir string, s *workspace.SSHProxy) sshplugin.Config {
	cfg := sshplugin.Config{Host: s.Host, Port: s.Port, User: s.User, StrictHostKeyChecking: s.StrictHostKeyChecking,
		ProxyJump: s.ProxyJump, KnownHostsFile: resolvePath(dir, s.KnownHostsFile)}
	if s.IdentityFile != "" {
		cfg.IdentityFiles = []string{resolvePath(dir, s.IdentityFile)}
	}
	if v := os.Getenv("TETHER_SSH_CONFIG"); v != "" {
		cfg.SSHConfigFile = v
	}
	return cfg
}
