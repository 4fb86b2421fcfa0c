package main

import (
	"github.com/tether-dev/tether/internal/cli"

	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/tether-dev/tether/launch"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/server"
	"github.com/tether-dev/tether/workspace"
)

func protocolVersion() string { return protocol.ProtocolVersion }

func workspaceSchema() []byte { return workspace.JSONSchema() }

func init() {
	register(command{name: "serve", args: "[--listen ADDR] [--workspace DIR] [--ppid PID]",
		summary: "JSON-RPC backend for IDE plugins (stdio by default)", run: serve})
}

func serve(ctx context.Context, args []string) error {
	fs := flags("serve", "[flags]", `Serve IDE plugins over JSON-RPC 2.0 with LSP framing (Content-Length headers).
By default one client on stdin/stdout; the exit code is 0 after shutdown+exit, 1 otherwise.
--listen serves several clients at once, each its own session.`)
	listen := fs.String("listen", "", "unix:PATH (socket mode 0600) or tcp:127.0.0.1:PORT (clients send the token in initializationOptions.token)")
	ws := fs.String("workspace", "", "workspace directory (overrides what clients send in initialize)")
	ppid := fs.Int("ppid", 0, "exit when this process (the IDE) is gone")
	tokenFile := fs.String("token-file", "", "where to write the TCP client token (default: a private file under the user's runtime dir)")
	logLevel := fs.String("log-level", "info", "lowest level logged and forwarded to clients: debug, info, warn, error")
	out := cli.OutputFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := cli.CheckOutput(*out); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", *logLevel)
	}
	if *ws != "" {
		if st, err := os.Stat(*ws); err != nil || !st.IsDir() {
			return fmt.Errorf("--workspace %q is not a directory", *ws)
		}
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	go cleanLeftovers(ctx, logger)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exitCode := 0
	opts := server.Options{Workspace: *ws, Version: fullVersion(), Logger: logger, LogLevel: level,
		OnParentExit: func() { exitCode = 1; cancel() }}

	if *listen == "" {
		srv := server.New(opts)
		srv.WatchParent(*ppid)
		code := srv.ServeConn(ctx, stdio{})
		if exitCode != 0 {
			code = exitCode
		}
		return cli.ExitError{Code: code}
	}

	ln, err := server.Listen(*listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	addr := ln.Addr().Network() + ":" + ln.Addr().String()
	info := map[string]string{"address": addr}
	if strings.HasPrefix(*listen, "tcp:") {
		opts.Token = server.NewToken()
		path := *tokenFile
		if path == "" {
			path = defaultTokenFile()
		}
		if err := server.WriteTokenFile(path, opts.Token); err != nil {
			return fmt.Errorf("write token file: %w", err)
		}
		defer os.Remove(path)
		info["tokenFile"] = path
	} else {
		defer os.Remove(strings.TrimPrefix(*listen, "unix:"))
	}
	if *out == "json" {
		_ = cli.PrintJSON(os.Stdout, info)
	} else if info["tokenFile"] != "" {
		fmt.Printf("listening on %s (clients send the token from %s)\n", addr, info["tokenFile"])
	} else {
		fmt.Printf("listening on %s\n", addr)
	}
	srv := server.New(opts)
	srv.WatchParent(*ppid)
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	if exitCode != 0 {
		return cli.ExitError{Code: exitCode}
	}
	return nil
}

func defaultTokenFile() string {
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		if c, err := os.UserCacheDir(); err == nil {
			dir = c
		} else {
			dir = os.TempDir()
		}
	}
	return filepath.Join(dir, "tether", fmt.Sprintf("serve-%d.token", os.Getpid()))
}

// stdio is the client connection of plain `tether serve`.
type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdio) Close() error                { return os.Stdin.Close() }

// cleanLeftovers removes, in the background, the containers that crashed
// backends of this user left behind (as `tether clean` does).
func cleanLeftovers(ctx context.Context, log *slog.Logger) {
	if _, err := os.Stat("/var/run/docker.sock"); err != nil && os.Getenv("DOCKER_HOST") == "" {
		return // no Docker here: nothing to clean, no need to wait for a ping
	}
	removed, err := launch.Clean(ctx, false)
	if err != nil {
		log.Debug("cleaning leftover containers", "err", err)
		return
	}
	for _, r := range removed {
		log.Info("removed a container left by a crashed backend", "container", r)
	}
}
