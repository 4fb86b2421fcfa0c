// Package progress lets long work report what it is doing without knowing
// who is watching: the JSON-RPC server turns reports into $/progress for the
// IDE, the CLI prints a progress line.
package progress

import (
	"context"
	"fmt"
)

// Reporter receives progress messages. Percent is 0–100, or -1 when unknown.
type Reporter interface {
	Report(message string, percent int)
}

// Func adapts a function to Reporter.
type Func func(message string, percent int)

// Report implements Reporter.
func (f Func) Report(message string, percent int) { f(message, percent) }

type key struct{}

// With returns ctx carrying r.
func With(ctx context.Context, r Reporter) context.Context {
	return context.WithValue(ctx, key{}, r)
}

// Report sends a message to the reporter in ctx, if any.
func Report(ctx context.Context, format string, args ...any) {
	Percent(ctx, -1, format, args...)
}

// Percent sends a message with a completion percentage.
func Percent(ctx context.Context, percent int, format string, args ...any) {
	if r, ok := ctx.Value(key{}).(Reporter); ok {
		r.Report(fmt.Sprintf(format, args...), percent)
	}
}
