package launch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/tether-dev/tether/plugins/kubernetes"
	sshplugin "github.com/tether-dev/tether/plugins/ssh"
	"github.com/tether-dev/tether/progress"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

// TestProxy checks a proxy step by step and names the step that fails. An
// ssh proxy: TCP, host key, authentication, a test dial through the tunnel;
// without a target, the test dial goes to the proxy machine's own SSH
// address as seen from itself (it needs AllowTcpForwarding on the proxy
// machine). A kubernetes proxy: kubeconfig, API server, permissions, agent
// image, dial (see testKubernetes).
func TestProxy(ctx context.Context, dir string, px *workspace.Proxy, prompts sshplugin.Prompts, target string) protocol.ProxyTestResult {
	res := protocol.ProxyTestResult{}
	step := func(name string, start time.Time, err error, okMsg string) bool {
		s := protocol.TestStep{Name: name, OK: err == nil, Message: okMsg, DurationMs: time.Since(start).Milliseconds()}
		if err != nil {
			s.Message = err.Error()
		}
		res.Steps = append(res.Steps, s)
		return err == nil
	}
	if px.Kubernetes != nil {
		return testKubernetes(ctx, dir, px, target)
	}
	if px.SSH == nil {
		step("tcp", time.Now(), fmt.Errorf("proxy %s has neither an ssh nor a kubernetes section", px.Name), "")
		return res
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

// testKubernetes runs the steps of kubernetes.Check: kubeconfig, apiServer,
// permissions, image, dial (through a real agent pod, deleted afterwards;
// default target: the API server's Service from inside the cluster).
func testKubernetes(ctx context.Context, dir string, px *workspace.Proxy, target string) protocol.ProxyTestResult {
	res := protocol.ProxyTestResult{OK: true}
	cfg := kubeConfig(dir, px.Kubernetes, nil, func(msg string) { progress.Report(ctx, "%s", msg) })
	kubernetes.Check(ctx, cfg, target, func(name string, took time.Duration, err error, msg string) bool {
		s := protocol.TestStep{Name: name, OK: err == nil, Message: msg, DurationMs: took.Milliseconds()}
		if err != nil {
			s.Message = err.Error()
			res.OK = false
		}
		progress.Report(ctx, "%s: %s", name, s.Message)
		res.Steps = append(res.Steps, s)
		return err == nil
	})
	if len(res.Steps) == 0 {
		res.OK = false
	}
	return res
}
