// Package errcat tags errors with who can fix them, where they are made:
// the user (the request), the config (tether.yaml, settings), the
// environment (network, remote machine, local tool) or Tether itself (a
// bug). The JSON-RPC layer turns the category into the reply's code and
// data.category; an error that nobody tagged is a bug (-32603).
package errcat

import (
	"errors"
	"fmt"
)

// Category says who can fix an error. The strings are the wire values of
// protocol.ErrorData.Category.
type Category string

const (
	User        Category = "user"        // the request: a wrong name, id or value
	Config      Category = "config"      // tether.yaml or the user's settings (kubeconfig, ssh config)
	Environment Category = "environment" // network, remote machine, cluster, Docker, a missing tool
	Bug         Category = "bug"         // Tether itself: see the logs and report it
)

// Error is an error tagged with its category.
type Error struct {
	Category Category
	Err      error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// New returns an error of category c with the message.
func (c Category) New(msg string) error { return &Error{Category: c, Err: errors.New(msg)} }

// Newf formats like fmt.Errorf (%w wraps) and tags the result with c.
func (c Category) Newf(format string, args ...any) error {
	return &Error{Category: c, Err: fmt.Errorf(format, args...)}
}

// Wrap tags err with c unless it already carries a category (the innermost
// maker knows best); nil stays nil.
func (c Category) Wrap(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Category: c, Err: err}
}

// Of returns the category of err: the innermost tag's, or Bug when nobody
// tagged it.
func Of(err error) Category {
	var e *Error
	if errors.As(err, &e) {
		return e.Category
	}
	return Bug
}

// Tagged reports whether err carries a category.
func Tagged(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
