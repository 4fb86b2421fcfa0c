// Package cli is the command-line frame that tether and tether-agent share:
// subcommands, consistent help, flag parsing with GNU-style double dashes,
// exit codes, --output json and --log-level.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

// ErrUsage is returned by a command whose arguments were wrong; the usage
// has been printed. Exit code 2.
var ErrUsage = errors.New("usage")

// ExitError carries an exit code out of a command (e.g. the app's).
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Command is one subcommand.
type Command struct {
	Name, Args, Summary string
	Run                 func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// App is a program made of subcommands.
type App struct {
	Name     string // "tether"
	Title    string // one line: what the program is for
	Commands []Command
}

// Run runs the subcommand named by args[0] until it returns or SIGINT /
// SIGTERM cancel its context, and returns the process exit code: 0, the
// command's ExitError code, 2 for usage errors, 1 for other errors (printed
// as "NAME COMMAND: error").
func (a *App) Run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 0 {
			a.usage(stderr)
			return 2
		}
		a.usage(stdout)
		return 0
	}
	for _, c := range a.Commands {
		if c.Name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.Run(ctx, args[1:], stdout, stderr)
		var ee ExitError
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ee):
			return ee.Code
		case errors.Is(err, ErrUsage):
			return 2
		}
		fmt.Fprintf(stderr, "%s %s: %v\n", a.Name, c.Name, err)
		return 1
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", a.Name, args[0])
	a.usage(stderr)
	return 2
}

func (a *App) usage(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nUsage:\n", a.Title)
	for _, c := range a.Commands {
		fmt.Fprintf(w, "  %s %s\n        %s\n", a.Name, strings.TrimSpace(c.Name+" "+c.Args), c.Summary)
	}
	fmt.Fprintf(w, "\nRun '%s COMMAND --help' for a command's flags.\n", a.Name)
}

// Flags returns a flag set with the common help format: help goes to
// stdout, errors to stderr.
func Flags(app, name, args, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s %s %s\n\n%s\n", app, name, args, summary)
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

// Parse parses flags (a parse error has already been printed: ErrUsage).
// Flags may follow positional arguments ("tether launch NAME --debug");
// maxArgs bounds the positional arguments (-1: any).
func Parse(fs *flag.FlagSet, args []string, stdout io.Writer, maxArgs int) error {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return flag.ErrHelp
		}
	}
	if err := fs.Parse(flagsFirst(fs, args)); err != nil {
		return ErrUsage
	}
	if maxArgs >= 0 && fs.NArg() > maxArgs {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(maxArgs))
		fs.Usage()
		return ErrUsage
	}
	return nil
}

// flagsFirst moves flags (and their values) ahead of positional arguments.
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && !isBool(f) && i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	return append(flags, rest...)
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// OutputFlag adds --output text|json.
func OutputFlag(fs *flag.FlagSet) *string {
	return fs.String("output", "text", "output `FORMAT`: text or json")
}

// CheckOutput validates --output.
func CheckOutput(o string) error {
	if o != "text" && o != "json" {
		return fmt.Errorf("--output %q: use text or json", o)
	}
	return nil
}

// PrintJSON writes v as indented JSON.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// LogFlag adds --log-level.
func LogFlag(fs *flag.FlagSet, def string) *string {
	return fs.String("log-level", def, "log `LEVEL`: debug, info, warn or error")
}

// ParseLevel reads a --log-level value.
func ParseLevel(level string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return l, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	return l, nil
}

// Version is version plus the VCS revision for development builds.
func Version(version string) string {
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
