// Command tether is the Tether backend that IDE plugins drive over JSON-RPC
// (tether serve), and the CLI for headless use.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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
	run                 func(ctx context.Context, args []string) error
}

var commands []command

func register(c command) { commands = append(commands, c) }

// exitError carries an exit code out of a command (e.g. the app's).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	tuneGC()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// tuneGC trades a little memory for CPU: x/crypto/ssh allocates a buffer per
// packet, and with the default GOGC=100 the collector costs ~20% of the CPU
// of a bulk transfer (bench/). A soft memory limit keeps the heap bounded.
// GOGC and GOMEMLIMIT in the environment win.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(256 << 20)
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.run(ctx, args[1:])
		var ee exitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &ee):
			return ee.code
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		fmt.Fprintf(stderr, "tether %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "tether: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintf(w, "Tether: run and debug one service on your laptop as if it were in the cloud.\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  tether %-34s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	fmt.Fprintf(w, "\nRun 'tether COMMAND --help' for a command's flags.\n")
}

// flags returns a flag set with the CLI's common help format.
func flags(name, args, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tether %s %s\n\n%s\n", name, args, summary)
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprintf(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses flags; a parse error has already been printed.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// outputFlag adds --output text|json.
func outputFlag(fs *flag.FlagSet) *string {
	return fs.String("output", "text", "output format: text or json")
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return fmt.Errorf("--output %q: use text or json", o)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
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

func init() {
	register(command{name: "version", summary: "print the version", run: func(ctx context.Context, args []string) error {
		fs := flags("version", "[--output json]", "Print the version.")
		out := outputFlag(fs)
		if err := parse(fs, args); err != nil {
			return err
		}
		if err := checkOutput(*out); err != nil {
			return err
		}
		if *out == "json" {
			return printJSON(os.Stdout, map[string]string{"version": fullVersion(), "go": runtime.Version(),
				"protocolVersion": protocolVersion()})
		}
		fmt.Printf("tether %s (%s, protocol %s)\n", fullVersion(), runtime.Version(), protocolVersion())
		return nil
	}})
	register(command{name: "schema", summary: "print the JSON Schema of tether.yaml", run: func(ctx context.Context, args []string) error {
		fs := flags("schema", "", "Print the JSON Schema of tether.yaml (also in schema/tether.schema.json).")
		if err := parse(fs, args); err != nil {
			return err
		}
		_, err := os.Stdout.Write(workspaceSchema())
		return err
	}})
}
