package peercred

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// accepted returns the server end of a connection from dial to ln.
func accepted(t *testing.T, ln net.Listener, dial func() (net.Conn, error)) net.Conn {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestGet(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("linux only")
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	addr := tcp.Addr().(*net.TCPAddr)
	sock := filepath.Join(t.TempDir(), "s")
	ux, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ux.Close() })
	tests := []struct {
		name string
		ln   net.Listener
		dial func() (net.Conn, error)
		pid  int
	}{
		{"tcp4", tcp, func() (net.Conn, error) { return net.Dial("tcp4", addr.String()) }, 0},
		// A dual-stack socket connecting to a v4 address, as the JVM does.
		{"tcp6 v4-mapped", tcp, func() (net.Conn, error) {
			return net.Dial("tcp", "[::ffff:"+addr.IP.String()+"]:"+strconv.Itoa(addr.Port))
		}, 0},
		{"unix", ux, func() (net.Conn, error) { return net.Dial("unix", sock) }, os.Getpid()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := accepted(t, tt.ln, tt.dial)
			t0 := time.Now()
			cr, err := Get(s)
			if err != nil || cr.UID != os.Getuid() || cr.PID != tt.pid {
				t.Fatalf("Get = %+v, %v; want uid %d pid %d", cr, err, os.Getuid(), tt.pid)
			}
			t.Logf("Get took %s", time.Since(t0))
			if !SameUser(s) {
				t.Error("own socket not recognised")
			}
			checkTCPLookups(t, s)
		})
	}
}

func TestNotLocal(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := Get(a); err == nil {
		t.Fatal("a net.Pipe has credentials")
	} else if runtime.GOOS == "linux" && !errors.Is(err, ErrNotLocal) {
		t.Fatalf("err = %v, want ErrNotLocal", err)
	}
	if SameUser(a) {
		t.Fatal("a net.Pipe peer is trusted")
	}
}

// TestOtherUser: a connection from another OS user is not the same user.
func TestOtherUser(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil || os.Getuid() != 0 {
		t.Skip("needs root and setpriv")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c",
		"exec 3<>/dev/tcp/127.0.0.1/"+port+"; sleep 2")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if cr, err := Get(s); err != nil || cr.UID != 65534 {
		t.Errorf("Get = %+v, %v; want uid 65534", cr, err)
	}
	if SameUser(s) {
		t.Fatal("a socket of uid 65534 passed the same-user check")
	}
}
