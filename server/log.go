package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/tether-dev/tether/protocol"
)

// clientLogHandler writes records to the backend log and forwards those at
// or above level to the session's client as window/logMessage.
type clientLogHandler struct {
	base  slog.Handler
	s     *session
	level slog.Level
	attrs []slog.Attr
}

func newClientLogHandler(base slog.Handler, s *session, level slog.Level) *clientLogHandler {
	return &clientLogHandler{base: base, s: s, level: level}
}

func (h *clientLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level || h.base.Enabled(ctx, l)
}

func (h *clientLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.base.Enabled(ctx, r.Level) {
		_ = h.base.Handle(ctx, r)
	}
	if r.Level < h.level || h.s.conn == nil {
		return nil
	}
	var b strings.Builder
	b.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		if a.Key != "session" {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	typ := protocol.MessageLog
	switch {
	case r.Level >= slog.LevelError:
		typ = protocol.MessageError
	case r.Level >= slog.LevelWarn:
		typ = protocol.MessageWarning
	case r.Level >= slog.LevelInfo:
		typ = protocol.MessageInfo
	}
	return h.s.conn.Notify(context.WithoutCancel(ctx), protocol.MethodLogMessage,
		protocol.LogMessageParams{Type: typ, Message: b.String()})
}

func (h *clientLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.base = h.base.WithAttrs(as)
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *clientLogHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.base = h.base.WithGroup(name)
	return &c
}
