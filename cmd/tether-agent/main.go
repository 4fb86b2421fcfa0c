// Command tether-agent is the cloud side of Tether: an SSH server that only
// forwards TCP, for Tether's tunnel (on a proxy machine, in a temporary
// Kubernetes pod, or as the Docker-mode sidecar), and a self-contained
// sandbox for a demo without infrastructure.
package main

import (
	"github.com/tether-dev/tether/internal/agentproto"
	"github.com/tether-dev/tether/internal/cli"

	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
)

// version is set at build time with -ldflags "-X main.version=..."; the
// Makefile sets agentproto.Version too, which wins when set.
var version = "dev"

// command is one subcommand of the CLI.

var app = &cli.App{Name: "tether-agent", Title: "tether-agent: the cloud side of Tether.", Commands: []cli.Command{
	{Name: "ssh", Args: sshArgs,
		Summary: "serve Tether's SSH tunnel (TCP forwarding only)", Run: runSSH},
	{Name: "sandbox", Args: "[--workspace DIR] [--listen 127.0.0.1:0]",
		Summary: "serve a demo private network and write tether.yaml for it", Run: runSandbox},
	{Name: "sidecar", Args: sidecarArgs,
		Summary: "Docker-mode sidecar: transparent TCP and DNS redirection to a SOCKS5 upstream", Run: runSidecar},
	{Name: "router", Args: "--port LISTEN=BASE... [--control :7070]",
		Summary: "lane router: HTTP requests of a lane to its developer, the rest to the base Service", Run: runRouter},
	{Name: "hold", Summary: "Docker-mode sidecar without interception: hold the network namespace until stopped", Run: runHold},
	{Name: "version", Summary: "print the version", Run: runVersion},
}}

// runHold is the sidecar of a container whose interconnect is off: it owns
// the network namespace (and the published ports) like Kubernetes' pause.
func runHold(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return cli.ErrUsage
	}
	fmt.Fprintln(stdout, agentproto.ReadyLine())
	<-ctx.Done()
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int { return app.Run(args, stdout, stderr) }

// flags and parse give every command the same help and flag handling;
// commands take no positional arguments.
func flags(name, args, summary string, stdout, stderr io.Writer) *flag.FlagSet {
	return cli.Flags("tether-agent", name, args, summary, stderr)
}

func parse(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	return cli.Parse(fs, args, stdout, 0)
}

// logFlag adds --log-level.
func logFlag(fs *flag.FlagSet) *string { return cli.LogFlag(fs, "info") }

func newLogger(level string, stderr io.Writer) (*slog.Logger, error) {
	l, err := cli.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: l})), nil
}

func fullVersion() string {
	if agentproto.Version != "dev" {
		return agentproto.Version
	}
	return cli.Version(version)
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("version", "", "Print the version.", stdout, stderr)
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tether-agent %s (protocol %d, %s)\n", fullVersion(), agentproto.Protocol, runtime.Version())
	return nil
}

// errUsage: the arguments were wrong and the usage is printed (exit 2).
var errUsage = cli.ErrUsage
