package errcat

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
)

// problems is an error type of one category, as workspace.Problems.
type problems struct{ err error }

func (p problems) Error() string           { return "problems" }
func (p problems) Unwrap() error           { return p.err }
func (p problems) ErrorCategory() Category { return Config }

var sentinel = User.New("not found")

func TestCategory(t *testing.T) {
	base := errors.New("boom")
	cases := []struct {
		name string
		err  error
		want Category
	}{
		{"untagged is a bug", base, Bug},
		{"tagged", Environment.Wrap(base), Environment},
		{"wrapped with %w keeps the tag", fmt.Errorf("proxy p: %w", Config.New("no host")), Config},
		{"the innermost tag wins", User.Wrap(fmt.Errorf("x: %w", Environment.Wrap(base))), Environment},
		{"newf wraps", Environment.Newf("dial: %w", context.DeadlineExceeded), Environment},
		{"an outer newf does not override", Environment.Newf("open: %w", Config.New("bad port")), Config},
		{"a type of one category", fmt.Errorf("load: %w", problems{}), Config},
		{"a tag inside a typed error wins", problems{err: User.New("x")}, User},
		{"joined: the first tagged", errors.Join(base, Environment.Wrap(base), User.Wrap(base)), Environment},
		{"a tagged sentinel", fmt.Errorf("proxy p: %w", sentinel), User},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Of(c.err); got != c.want {
				t.Fatalf("Of = %q, want %q", got, c.want)
			}
		})
	}
	if Environment.Wrap(nil) != nil {
		t.Fatal("Wrap(nil) must be nil")
	}
	if err := Environment.Newf("dial: %w", context.DeadlineExceeded); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("Newf must keep the wrapped error")
	}
	if Tagged(base) || !Tagged(fmt.Errorf("a: %w", User.New("b"))) || !Tagged(problems{}) {
		t.Fatal("Tagged is wrong")
	}
	if err := fmt.Errorf("a: %w", sentinel); !errors.Is(err, sentinel) {
		t.Fatal("a tagged sentinel must match errors.Is")
	}
	if p := (problems{}); Environment.Wrap(p) != error(p) {
		t.Fatal("Wrap must keep a typed error that has its category")
	}
}

func TestChain(t *testing.T) {
	_, err := os.Open("/nonexistent/errcat")
	err = fmt.Errorf("load: %w", err)
	if got, want := Chain(err), "*fmt.wrapError > *fs.PathError > syscall.Errno"; got != want {
		t.Errorf("Chain = %q, want %q", got, want)
	}
	if got, want := Chain(errors.Join(errors.New("a"), Environment.New("b"))), "*errors.joinError > [*errors.errorString, *errcat.Error > *errors.errorString]"; got != want {
		t.Errorf("Chain = %q, want %q", got, want)
	}
	if Chain(nil) != "" {
		t.Error("Chain(nil) must be empty")
	}
}
