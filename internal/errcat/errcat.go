// Package errcat tags errors with who can fix them, where they are made:
// the user (the request), the config (tether.yaml, settings), the
// environment (network, remote machine, local tool) or Tether itself (a
// bug). The JSON-RPC layer turns the category into the reply's code and
// data.category; an error that nobody tagged is a bug (-32603).
//
// Tag an error where it is made (User.New, Environment.Wrap, ...). An error
// type whose values all have one category (a list of config problems) may
// instead have a method ErrorCategory() Category; a sentinel may be made
// tagged (var ErrX = User.New("...")), so that every %w of it is tagged.
package errcat

import (
	"errors"
	"fmt"
	"strings"
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

// ErrorCategory returns e.Category.
func (e *Error) ErrorCategory() Category { return e.Category }

// categorized is an error that knows its category: *Error, or an error type
// of one category.
type categorized interface{ ErrorCategory() Category }

// New returns an error of category c with the message.
func (c Category) New(msg string) error { return &Error{Category: c, Err: errors.New(msg)} }

// Newf formats like fmt.Errorf (%w wraps) and tags the result with c.
func (c Category) Newf(format string, args ...any) error {
	return &Error{Category: c, Err: fmt.Errorf(format, args...)}
}

// Wrap tags err with c unless it already carries a category (the innermost
// maker knows best); nil stays nil.
func (c Category) Wrap(err error) error {
	if err == nil || Tagged(err) {
		return err
	}
	return &Error{Category: c, Err: err}
}

// Of returns the category of err: the innermost tag's (the innermost maker
// knows best, also when an outer Newf tagged it again), or Bug when nobody
// tagged it.
func Of(err error) Category {
	if c, ok := innermost(err); ok {
		return c
	}
	return Bug
}

// Tagged reports whether err carries a category.
func Tagged(err error) bool {
	_, ok := innermost(err)
	return ok
}

// Chain lists the types of err's chain, outermost first ("*fmt.wrapError >
// *fs.PathError > syscall.Errno"): for the log of an untagged error, to
// find where it was made.
func Chain(err error) string {
	var parts []string
	for err != nil {
		parts = append(parts, fmt.Sprintf("%T", err))
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			var inner []string
			for _, e := range u.Unwrap() {
				inner = append(inner, Chain(e))
			}
			if len(inner) > 0 {
				parts = append(parts, "["+strings.Join(inner, ", ")+"]")
			}
			err = nil
		default:
			err = nil
		}
	}
	return strings.Join(parts, " > ")
}

// innermost walks err's chain (depth first, as errors.As does) and returns
// the category of the deepest categorized error on the first branch that
// has one.
func innermost(err error) (Category, bool) {
	if err == nil {
		return "", false
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if c, ok := innermost(u.Unwrap()); ok {
			return c, true
		}
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if c, ok := innermost(e); ok {
				return c, true
			}
		}
	}
	if c, ok := err.(categorized); ok {
		return c.ErrorCategory(), true
	}
	return "", false
}
