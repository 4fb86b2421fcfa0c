package workspace

import (
	"errors"
	"os"
	"testing"

	"github.com/tether-dev/tether/internal/errcat"
)

// Each way a workspace operation fails carries its category, and the
// sentinels and types still match errors.Is / errors.As.
func TestErrorCategories(t *testing.T) {
	notYAML := writeSample(t, "version: 1\nproxies: [\n")
	_, errSyntax := notYAML.Load()
	var se *SyntaxError
	if !errors.As(errSyntax, &se) {
		t.Fatalf("not a SyntaxError: %v", errSyntax)
	}

	future := writeSample(t, "version: 2\n")
	_, errVersion := future.Load()
	var fe *FileError
	if !errors.As(errVersion, &fe) {
		t.Fatalf("not a FileError: %v", errVersion)
	}

	w := writeSample(t, sample)
	s, err := w.Load()
	if err != nil {
		t.Fatal(err)
	}
	_, errNotFound := w.DeleteConfig("", "nope")
	_, errConflict := w.DeleteConfig("0000000000000000", "orders")
	_, errProblems := w.SaveConfig(s.Revision, RunConfig{Name: "bad", Type: "java"})
	var ps Problems
	if !errors.As(errProblems, &ps) {
		t.Fatalf("not Problems: %v", errProblems)
	}

	unreadable := writeSample(t, sample)
	if err := os.Remove(unreadable.Path()); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(unreadable.Path(), 0o755); err != nil { // tether.yaml is a directory
		t.Fatal(err)
	}
	_, errRead := unreadable.Load()

	cases := []struct {
		name string
		err  error
		is   error
		want errcat.Category
	}{
		{"not YAML", errSyntax, nil, errcat.Config},
		{"unknown version", errVersion, nil, errcat.Config},
		{"invalid configuration", errProblems, nil, errcat.Config},
		{"unknown name", errNotFound, ErrNotFound, errcat.User},
		{"stale revision", errConflict, ErrConflict, errcat.User},
		{"file not readable", errRead, nil, errcat.Environment},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil {
				t.Fatal("no error")
			}
			if got := errcat.Of(c.err); got != c.want {
				t.Fatalf("category %q, want %q (%v)", got, c.want, c.err)
			}
			if c.is != nil && !errors.Is(c.err, c.is) {
				t.Fatalf("%v does not match %v", c.err, c.is)
			}
		})
	}
}
