package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tether-dev/tether/agent"
)

// Files of the sandbox, in DIR/.tether-sandbox/.
const (
	sandboxDir      = ".tether-sandbox"
	sandboxHostKey  = "host_key"
	sandboxClient   = "id_ed25519"
	sandboxKnown    = "known_hosts"
	sandboxPortFile = "port" // the last port, reused when --listen asks for port 0
	sandboxClasses  = "classes"
	sandboxUser     = "tether"
	sandboxProxy    = "sandbox"
	sandboxConfig   = "sample"
	workspaceFile   = "tether.yaml"
)

func runSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("sandbox", "[--workspace DIR] [--listen 127.0.0.1:0]",
		"Serve a private network that exists only inside this process, through an SSH\n"+
			"proxy machine on loopback, for trying Tether without any infrastructure:\n"+
			"  orders.sandbox.internal (10.99.0.10) port 80    HTTP, GET / answers JSON, /fail 500, /slow?ms=N late\n"+
			"  db.sandbox.internal     (10.99.0.11) port 5432  TCP echo\n"+
			"Keys and known_hosts go to DIR/"+sandboxDir+"/; DIR/"+workspaceFile+" gets a proxy\n"+
			"named \""+sandboxProxy+"\" and a Java run configuration \""+sandboxConfig+"\" (an existing file is not\n"+
			"changed: what to add is printed). Serves until interrupted.", stdout, stderr)
	workspace := fs.String("workspace", ".", "the workspace `DIR`")
	listen := fs.String("listen", "127.0.0.1:0", "`ADDR` to listen on (port 0: the last port used, else any free port)")
	logLevel := logFlag(fs)
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	log, err := newLogger(*logLevel, stderr)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(*workspace)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(dir); err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("--workspace %s: not a directory", dir)
	}
	state := filepath.Join(dir, sandboxDir)
	if err := os.MkdirAll(filepath.Join(state, sandboxClasses), 0o700); err != nil {
		return err
	}
	hostKey, _, err := agent.LoadOrCreateKey(filepath.Join(state, sandboxHostKey), "tether sandbox host key")
	if err != nil {
		return err
	}
	clientKey, _, err := agent.LoadOrCreateKey(filepath.Join(state, sandboxClient), "tether sandbox client")
	if err != nil {
		return err
	}
	for _, f := range []string{sandboxHostKey, sandboxClient} {
		os.Chmod(filepath.Join(state, f), 0o600) // also for keys of an earlier run
	}

	ln, prevPort, err := listenSandbox(*listen, filepath.Join(state, sandboxPortFile))
	if err != nil {
		return err
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	endpoint := net.JoinHostPort(host, strconv.Itoa(addr.Port))

	known := knownhosts.Line([]string{knownhosts.Normalize(endpoint)}, hostKey.PublicKey()) + "\n"
	if err := agent.WriteFileAtomic(filepath.Join(state, sandboxKnown), []byte(known), 0o600); err != nil {
		return err
	}
	if err := writeWorkspace(dir, host, addr.Port, prevPort, stderr); err != nil {
		return err
	}
	if err := agent.WriteFileAtomic(filepath.Join(state, sandboxPortFile), []byte(strconv.Itoa(addr.Port)+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Host key: %s %s\n", hostKey.PublicKey().Type(), ssh.FingerprintSHA256(hostKey.PublicKey()))
	fmt.Fprintf(stderr, "Services: orders.sandbox.internal:80 (HTTP: /, /fail, /slow?ms=N), db.sandbox.internal:5432 (echo); 10.99.0.0/24\n")
	fmt.Fprintf(stderr, "Sample app: javac -d %s examples/sample-app/Sample.java && tether launch --workspace %s %s\n",
		shellQuote(filepath.Join(state, sandboxClasses)), shellQuote(dir), sandboxConfig)
	fmt.Fprintf(stdout, "sandbox proxy machine listening on %s (workspace %s)\n", endpoint, dir)

	sb := agent.NewSandbox()
	defer sb.Close()
	err = agent.ServeSSH(ctx, ln, agent.SSHServerConfig{
		HostKey:        hostKey,
		AuthorizedKeys: []ssh.PublicKey{clientKey.PublicKey()},
		Dial:           sb.Dial,
		Listen:         sb.Listen,
		Logger:         log,
	})
	if err == nil {
		fmt.Fprintln(stderr, "sandbox stopped")
	}
	return err
}

// listenSandbox listens on addr; with port 0 it first tries the port of the
// last run, so that tether.yaml stays valid across restarts.
func listenSandbox(addr, portFile string) (net.Listener, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, fmt.Errorf("--listen %q: %w", addr, err)
	}
	prev := 0
	if data, err := os.ReadFile(portFile); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n > 0 && n < 65536 {
			prev = n
		}
	}
	if port == "0" && prev != 0 {
		if ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(prev))); err == nil {
			return ln, prev, nil
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	return ln, prev, nil
}

func q(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return strings.TrimSpace(b.String()) // a JSON string is a YAML double-quoted scalar
}

func proxyYAML(dir, host string, port int) string {
	state := filepath.Join(dir, sandboxDir)
	return fmt.Sprintf(`  - name: %s
    ssh:
      host: %s
      port: %d
      user: %s
      identityFile: %s
      knownHostsFile: %s
      strictHostKeyChecking: "yes"
    routes:
      cidrs: [%s]
      domains: [%s]
`, sandboxProxy, q(host), port, sandboxUser, q(filepath.Join(state, sandboxClient)),
		q(filepath.Join(state, sandboxKnown)), agent.SandboxCIDR, agent.SandboxZone)
}

func configYAML(dir string) string {
	return fmt.Sprintf(`  - name: %s
    type: java
    java:
      mainClass: Sample
      classpath: [%s]
    interconnect:
      enabled: true
      proxy: %s
`, sandboxConfig, q(filepath.Join(dir, sandboxDir, sandboxClasses)), sandboxProxy)
}

func workspaceYAML(dir, host string, port int) string {
	return "# Written by `tether-agent sandbox`: a demo private network that exists only\n" +
		"# inside the agent. Compile the sample into the classpath below with\n" +
		"#   javac -d " + filepath.Join(dir, sandboxDir, sandboxClasses) + " examples/sample-app/Sample.java\n" +
		"version: 1\nproxies:\n" + proxyYAML(dir, host, port) + "configurations:\n" + configYAML(dir)
}

// writeWorkspace writes DIR/tether.yaml. An existing file is left alone and
// what to add is printed, unless it is exactly what the last run wrote (then
// only its port changes).
func writeWorkspace(dir, host string, port, prevPort int, stderr io.Writer) error {
	path := filepath.Join(dir, workspaceFile)
	want := workspaceYAML(dir, host, port)
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := agent.WriteFileAtomic(path, []byte(want), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "Wrote %s (proxy %q, run configuration %q)\n", path, sandboxProxy, sandboxConfig)
		return nil
	case err != nil:
		return err
	case string(old) == want:
		return nil
	case prevPort != 0 && string(old) == workspaceYAML(dir, host, prevPort):
		if err := agent.WriteFileAtomic(path, []byte(want), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "Updated the sandbox port in %s: %d -> %d\n", path, prevPort, port)
		return nil
	}
	fmt.Fprintf(stderr, "%s exists and was not changed. For the sandbox, add this under proxies:\n%s"+
		"and this under configurations:\n%s(or update the port of proxy %q to %d).\n",
		path, proxyYAML(dir, host, port), configYAML(dir), sandboxProxy, port)
	return nil
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == ':' || r == '@' || r == '+' || r == ',' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
