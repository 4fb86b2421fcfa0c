package errcat

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

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
	if Tagged(base) || !Tagged(fmt.Errorf("a: %w", User.New("b"))) {
		t.Fatal("Tagged is wrong")
	}
}
