// Command tether is the Tether backend that IDE plugins drive over JSON-RPC
// (tether serve), and the CLI for headless use.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/tether-dev/tether/internal/cli"
	"github.com/tether-dev/tether/launch"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

var app = &cli.App{Name: "tether", Title: "Tether: run and debug one service on your laptop as if it were in the cloud."}

// command is one subcommand; its output goes to the process's stdout and
// stderr.
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, args []string) error
}

func register(c command) {
	app.Commands = append(app.Commands, cli.Command{Name: c.name, Args: c.args, Summary: c.summary,
		Run: func(ctx context.Context, args []string, _, _ io.Writer) error { return c.run(ctx, args) }})
}

func main() {
	launch.MaybeSupervise() // `tether __supervise`: an app's supervisor (never returns)
	tuneGC()
	os.Exit(app.Run(os.Args[1:], os.Stdout, os.Stderr))
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

// flags and parse give every command the same help and flag handling.
func flags(name, args, summary string) *flag.FlagSet {
	return cli.Flags("tether", name, args, summary, os.Stderr)
}

func parse(fs *flag.FlagSet, args []string) error { return cli.Parse(fs, args, os.Stdout, -1) }

func fullVersion() string { return cli.Version(version) }

func init() {
	register(command{name: "version", args: "[--output json]", summary: "print the version", run: func(ctx context.Context, args []string) error {
		fs := flags("version", "[--output json]", "Print the version.")
		out := cli.OutputFlag(fs)
		if err := parse(fs, args); err != nil {
			return err
		}
		if err := cli.CheckOutput(*out); err != nil {
			return err
		}
		if *out == "json" {
			return cli.PrintJSON(os.Stdout, map[string]string{"version": fullVersion(), "go": runtime.Version(),
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
