package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tether-dev/tether/protocol"
)

// TestReleaseUnknownSession: launch/release of a session this client never
// prepared, or already released, is error 1001 naming the sessionId; a
// session prepared with interconnect off is released once.
func TestReleaseUnknownSession(t *testing.T) {
	ws := t.TempDir()
	yaml := "version: 1\nconfigurations:\n  - name: plain\n    type: exec\n    exec: {command: [true]}\n"
	if err := os.WriteFile(filepath.Join(ws, "tether.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, "--workspace", ws)
	initialize(t, p.Client, map[string]any{})
	ctx := ctxT(t)
	expectCode(t, p.Call(ctx, "launch/release", map[string]any{"sessionId": "s-000000000000"}, nil), protocol.CodeNotFound, `sessionId "s-000000000000"`)
	expectCode(t, p.Call(ctx, "launch/release", map[string]any{"sessionId": "nope"}, nil), protocol.CodeNotFound, `sessionId "nope"`)
	var prep protocol.LaunchPrepareResult
	if err := p.Call(ctx, "launch/prepare", map[string]any{"config": "plain"}, &prep); err != nil {
		t.Fatal(err)
	}
	if err := p.Call(ctx, "launch/release", map[string]any{"sessionId": prep.SessionID}, nil); err != nil {
		t.Fatalf("release %s: %v", prep.SessionID, err)
	}
	e := expectCode(t, p.Call(ctx, "launch/release", map[string]any{"sessionId": prep.SessionID}, nil), protocol.CodeNotFound, prep.SessionID)
	t.Logf("second release: %d %s", e.Code, e.Message)
}
