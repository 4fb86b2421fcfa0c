// Command tether-agent is the cloud side of Tether: an SSH server that only
// forwards TCP, for Tether's tunnel (on a proxy machine, in a temporary
// Kubernetes pod, or as the Docker-mode sidecar), and a self-contained
// sandbox for a demo without infrastructure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// command is one subcommand of the CLI.
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{name: "ssh", args: "--listen ADDR --authorized-keys FILE [--host-key FILE] [--idle-exit 60s]",
		summary: "serve Tether's SSH tunnel (TCP forwarding only)", run: runSSH},
	{name: "sandbox", args: "[--workspace DIR] [--listen 127.0.0.1:0]",
		summary: "serve a demo private network and write tether.yaml for it", run: runSandbox},
	{name: "sidecar", args: sidecarArgs,
		summary: "Docker-mode sidecar: transparent TCP and DNS redirection to a SOCKS5 upstream", run: runSidecar},
	{name: "hold", summary: "Docker-mode sidecar without interception: hold the network namespace until stopped", run: runHold},
	{name: "version", summary: "print the version", run: runVersion},
}

// runHold is the sidecar of a container whose interconnect is off: it owns
// the network namespace (and the published ports) like Kubernetes' pause.
func runHold(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	fmt.Fprintln(stdout, "tether-sidecar ready")
	<-ctx.Done()
	return nil
}

var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 0 {
			usage(stderr)
			return 2
		}
		usage(stdout)
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		fmt.Fprintf(stderr, "tether-agent %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "tether-agent: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "tether-agent: the cloud side of Tether.\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  tether-agent %s\n        %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	fmt.Fprintf(w, "\nRun 'tether-agent COMMAND --help' for a command's flags.\n")
}

// flags returns a flag set with the CLI's common help format; help goes to
// stdout, errors to stderr.
func flags(name, args, summary string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: tether-agent %s %s\n\n%s\n", name, args, summary)
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprintf(w, "\nFlags:\n")
			printDefaults(w, fs)
		}
	}
	return fs
}

// printDefaults is flag.PrintDefaults with GNU-style double dashes, as the
// usage lines spell them.
func printDefaults(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "%-28s %s\n", line, usage)
	})
}

// parse parses flags; a parse error has already been printed. Positional
// arguments are refused.
func parse(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return flag.ErrHelp
		}
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

// logFlag adds --log-level.
func logFlag(fs *flag.FlagSet) *string {
	return fs.String("log-level", "info", "log `LEVEL` on stderr: debug, info, warn or error")
}

func newLogger(level string, stderr io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: l})), nil
}

func fullVersion() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
	}
	return v
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("version", "", "Print the version.", stdout, stderr)
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tether-agent %s (%s)\n", fullVersion(), runtime.Version())
	return nil
}
