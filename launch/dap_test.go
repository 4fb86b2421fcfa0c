package launch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/tether-dev/tether/workspace"
)

// TestDAPServer: one endpoint per Manager, its sessions listed while they
// last, all of it closed by CloseAll.
func TestDAPServer(t *testing.T) {
	m := NewManager(&workspace.Workspace{Dir: t.TempDir()}, Hooks{})
	served := make(chan struct{}, 1)
	echo := func(ctx context.Context, c net.Conn, _ *slog.Logger) error {
		served <- struct{}{}
		_, err := io.Copy(c, c) // until the peer or CloseAll closes c
		return err
	}
	addr, err := m.DAPServer(echo)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := m.DAPServer(echo); err != nil || again != addr {
		t.Fatalf("second DAPServer = %q, %v; want %q", again, err, addr)
	}
	if got := m.DAPSessions(); len(got) != 0 {
		t.Fatalf("sessions before any connection: %+v", got)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was not served")
	}
	ss := m.DAPSessions()
	if len(ss) != 1 || ss[0].Peer != c.LocalAddr().String() || ss[0].SessionID == "" || ss[0].Since == "" {
		t.Fatalf("sessions = %+v", ss)
	}
	m.CloseAll()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after CloseAll: %v, want EOF", err)
	}
	if got := m.DAPSessions(); len(got) != 0 {
		t.Fatalf("sessions after CloseAll: %+v", got)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("the endpoint still accepts after CloseAll")
	}
	if _, err := m.DAPServer(echo); err == nil {
		t.Fatal("DAPServer after CloseAll succeeded")
	}
}
