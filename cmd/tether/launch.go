package main

import (
	"github.com/tether-dev/tether/internal/cli"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/term"

	"github.com/tether-dev/tether/channel"
	"github.com/tether-dev/tether/launch"
	"github.com/tether-dev/tether/progress"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

func init() {
	register(command{name: "launch", args: "[--workspace DIR] NAME [--debug]",
		summary: "run a run configuration with interconnect; exit code is the app's", run: launchCmd})
	register(command{name: "clean", args: "[--all] [--workspace DIR] [--output json]",
		summary: "remove containers and agent pods that crashed backends of this user left behind", run: cleanCmd})
	register(command{name: "connect", args: "[--workspace DIR] PROXY [--output json]",
		summary: "hold a tunnel and print the local SOCKS5/HTTP proxy until Ctrl-C", run: connectCmd})
}

// terminalPrompts is the CLI's answer to questions: unknown host keys are
// refused (set strictHostKeyChecking: accept-new to add them), secrets are
// read from the terminal when there is one.
type terminalPrompts struct{}

func (terminalPrompts) HostKey(ctx context.Context, host, fingerprint, keyType string) (bool, error) {
	fmt.Fprintf(os.Stderr, "tether: proxy machine %s is not in known_hosts (%s %s); refusing. Verify the fingerprint, then add it (ssh %s once) or set strictHostKeyChecking: accept-new\n",
		host, keyType, fingerprint, host)
	return false, nil
}

func (terminalPrompts) Secret(ctx context.Context, prompt string, echo bool) (string, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New("no terminal to ask for it on (use a key or ssh-agent for headless runs)")
	}
	fmt.Fprint(os.Stderr, prompt)
	if echo {
		var s string
		_, err := fmt.Fscanln(os.Stdin, &s)
		return s, err
	}
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	return string(b), err
}

// cliProgress prints progress lines to stderr.
func cliProgress(ctx context.Context) context.Context {
	return progress.With(ctx, progress.Func(func(msg string, pct int) {
		fmt.Fprintf(os.Stderr, "tether: %s...\n", msg)
	}))
}

func workspaceFlag(fsDir string) (*workspace.Workspace, error) {
	dir := fsDir
	if dir == "" {
		var err error
		if dir, err = os.Getwd(); err != nil {
			return nil, err
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--workspace %s is not a directory", dir)
	}
	return &workspace.Workspace{Dir: abs}, nil
}

func cliLogger(verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func launchCmd(ctx context.Context, args []string) error {
	fs := flags("launch", "[--workspace DIR] NAME [--debug] [--log-calls] [--har FILE]", `Run the run configuration NAME of the workspace (default: the current directory).
With interconnect on, the app reaches the cloud through its proxy; the tunnel closes when it exits.
Ctrl-C stops the app (SIGTERM, then SIGKILL). The exit code is the app's.`)
	wsDir := fs.String("workspace", "", "workspace directory (default: the current directory)")
	debug := fs.Bool("debug", false, "start a java app with JDWP on a loopback port and print the address")
	logConns := fs.Bool("log-connections", false, "print every connection as it ends")
	logCalls := fs.Bool("log-calls", false, "print every HTTP call (and TLS server name) of the app as its response ends")
	harFile := fs.String("har", "", "write the app's HTTP calls to `FILE` as HAR 1.2 when it exits (opens in browser devtools)")
	verbose := fs.Bool("verbose", false, "print the backend log")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return cli.ErrUsage
	}
	ws, err := workspaceFlag(*wsDir)
	if err != nil {
		return err
	}
	var outMu sync.Mutex
	hooks := launch.Hooks{
		Prompts: terminalPrompts{},
		Logger:  cliLogger(*verbose),
		OnOutput: func(id, stream string, data []byte) {
			outMu.Lock()
			defer outMu.Unlock()
			if stream == "stderr" {
				os.Stderr.Write(data)
			} else {
				os.Stdout.Write(data)
			}
		},
		OnState: func(st protocol.TunnelStatus) {
			msg := fmt.Sprintf("tether: tunnel to %s: %s", st.Proxy, st.State)
			if st.Error != "" {
				msg += " (" + st.Error + ")"
			}
			fmt.Fprintln(os.Stderr, msg)
		},
		OnLaunchState: func(p protocol.LaunchStateParams) {
			switch p.State {
			case protocol.StateRunning:
				for _, e := range p.Exposed {
					fmt.Fprintf(os.Stderr, "tether: cloud callers reach local port %d at %s\n", e.LocalPort, e.Address)
				}
			case protocol.StateDebugReady:
				fmt.Fprintf(os.Stderr, "tether: debugger can attach at %s\n", p.DebugAddress)
			}
		},
	}
	if *logConns {
		hooks.OnConn = func(r protocol.ConnectionRecord) { fmt.Fprintln(os.Stderr, "tether: "+formatRecord(r)) }
	}
	if *logCalls {
		hooks.OnCall = func(r protocol.CallRecord) { fmt.Fprintln(os.Stderr, "tether: "+formatCall(r)) }
	}
	hooks.OnLaneFallback = func(p protocol.LaneFallbackParams) {
		fmt.Fprintf(os.Stderr, "tether: lane %s: %d request(s) to %s served by the base pods: %s\n", p.Lane, p.Count, p.Service, p.Reason)
	}
	m := launch.NewManager(ws, hooks)
	defer m.CloseAll()
	l, err := m.Start(cliProgress(ctx), fs.Arg(0), *debug)
	if err != nil {
		return err
	}
	if ic := l.Interconnect(); ic != nil {
		fmt.Fprintf(os.Stderr, "tether: %s runs with interconnect through %s\n", fs.Arg(0), ic.Proxy)
	}
	select {
	case <-l.Done():
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "tether: stopping the app")
		l.Stop()
		<-l.Done()
	}
	if l.Interconnect() != nil {
		m.FlushCalls()
		printSummary(l.Summary())
	}
	if *harFile != "" {
		if err := writeHAR(m, *harFile, l.ID); err != nil {
			fmt.Fprintf(os.Stderr, "tether: --har: %v\n", err)
		} else {
			fmt.Fprintf(os.Stderr, "tether: HTTP calls written to %s (HAR)\n", *harFile)
		}
	}
	if code := l.ExitCode(); code != 0 {
		return cli.ExitError{Code: code}
	}
	return nil
}

func formatRecord(r protocol.ConnectionRecord) string {
	if r.Error != "" {
		return fmt.Sprintf("%s via %s: %s", r.Target, r.Route, r.Error)
	}
	return fmt.Sprintf("%s via %s: sent %s, received %s in %dms", r.Target, r.Route, bytesStr(r.Sent), bytesStr(r.Received), r.DurationMs)
}

// formatCall is one line of --log-calls:
//
//	GET http://orders.sandbox.internal/ -> 200 12ms (conn 3, opened by Sample.get(Sample.java:52))
func formatCall(r protocol.CallRecord) string {
	var b strings.Builder
	if r.Direction == protocol.DirectionInbound {
		b.WriteString("from the cloud: ")
	}
	if r.TLS {
		name := r.SNI
		if name == "" {
			name = "no server name"
		}
		fmt.Fprintf(&b, "TLS %s (%s): sent %s, received %s in %.0fms", r.Target, name, bytesStr(r.Sent), bytesStr(r.Received), r.DurationMs)
	} else {
		status := strconv.Itoa(r.Status)
		if r.Status == 0 {
			status = "no response"
		}
		fmt.Fprintf(&b, "%s %s -> %s %.0fms", r.Method, r.URL, status, r.DurationMs)
		if r.TraceID != "" {
			b.WriteString(" trace " + r.TraceID)
		}
		if r.Error != "" {
			b.WriteString(" (" + r.Error + ")")
		}
	}
	fmt.Fprintf(&b, " [conn %d", r.Conn)
	if r.OpenedBy != "" {
		b.WriteString(", opened by " + r.OpenedBy)
	}
	b.WriteString("]")
	return b.String()
}

func writeHAR(m *launch.Manager, path, session string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := m.WriteHAR(f, session, version); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func printSummary(s channel.Summary) {
	fmt.Fprintf(os.Stderr, "tether: connections: %d (%d through the tunnel, %d direct, %d failed); sent %s, received %s\n",
		s.Connections, s.Tunnel, s.Direct, s.Failed, bytesStr(s.Sent), bytesStr(s.Received))
	for _, f := range s.Failures {
		fmt.Fprintf(os.Stderr, "tether:   failed: %s via %s: %s\n", f.Target, f.Route, f.Err)
	}
}

func bytesStr(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func connectCmd(ctx context.Context, args []string) error {
	fs := flags("connect", "[--workspace DIR] PROXY [--output json]", `Open the tunnel to PROXY and a local SOCKS5 and HTTP proxy in front of it, print where
they are and their per-session credentials, and hold them until Ctrl-C.`)
	wsDir := fs.String("workspace", "", "workspace directory (default: the current directory)")
	out := cli.OutputFlag(fs)
	verbose := fs.Bool("verbose", false, "print the backend log")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := cli.CheckOutput(*out); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return cli.ErrUsage
	}
	ws, err := workspaceFlag(*wsDir)
	if err != nil {
		return err
	}
	s, err := ws.Load()
	if err != nil {
		return err
	}
	px, ok := s.File.Proxy(fs.Arg(0))
	if !ok {
		return fmt.Errorf("no proxy named %q in %s", fs.Arg(0), ws.Path())
	}
	if ps := workspace.ValidateProxy(px); len(ps) > 0 {
		return fmt.Errorf("proxy %s: %w", px.Name, ps)
	}
	ic, err := launch.OpenInterconnect(cliProgress(ctx), ws.Dir, px, "connect", launch.Hooks{
		Prompts: terminalPrompts{}, Logger: cliLogger(*verbose),
		OnState: func(st protocol.TunnelStatus) {
			fmt.Fprintf(os.Stderr, "tether: tunnel to %s: %s %s\n", st.Proxy, st.State, st.Error)
		},
	})
	if err != nil {
		return err
	}
	defer ic.Close()
	info := map[string]string{"proxy": px.Name, "socks5": ic.Channel.SOCKSAddr(), "http": ic.Channel.HTTPAddr(),
		"username": ic.Channel.Username(), "password": ic.Channel.Password()}
	if *out == "json" {
		_ = cli.PrintJSON(os.Stdout, info)
	} else {
		fmt.Printf("tunnel to %s is up; until Ctrl-C:\n  SOCKS5  %s\n  HTTP    %s\n  user    %s\n  pass    %s\n  e.g.    ALL_PROXY=%s\n",
			px.Name, info["socks5"], info["http"], info["username"], info["password"], ic.ProxyEnv()["ALL_PROXY"])
	}
	<-ctx.Done()
	printSummary(ic.Summary())
	return nil
}

func cleanCmd(ctx context.Context, args []string) error {
	fs := flags("clean", "[--all] [--workspace DIR] [--output json]", `Remove the containers (app and sidecar) and the Kubernetes agent pods (in the clusters of the
workspace's kubernetes proxies) that Tether backends of this user left behind when they
crashed: those whose owner process is gone. Other users' or hosts' are never touched.
--all also removes this user's running sessions.`)
	all := fs.Bool("all", false, "also remove containers and pods of this user's running backends")
	wsDir := fs.String("workspace", "", "workspace whose kubernetes proxies' clusters are cleaned too (default: the current directory)")
	out := cli.OutputFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := cli.CheckOutput(*out); err != nil {
		return err
	}
	removed, err := launch.Clean(ctx, *all)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tether: containers: %v\n", err)
	}
	if ws, werr := workspaceFlag(*wsDir); werr == nil {
		pods, perr := launch.CleanPods(ctx, ws, *all)
		removed = append(removed, pods...)
		if perr != nil {
			fmt.Fprintf(os.Stderr, "tether: pods: %v\n", perr)
			err = perr
		}
	}
	if err != nil && len(removed) == 0 {
		return err
	}
	if *out == "json" {
		return cli.PrintJSON(os.Stdout, map[string]any{"removed": nonNilStrings(removed)})
	}
	if len(removed) == 0 {
		fmt.Println("nothing to clean")
	}
	for _, r := range removed {
		fmt.Println("removed", r)
	}
	return nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
