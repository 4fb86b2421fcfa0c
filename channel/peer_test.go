package channel

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"
)

func TestSameUserPeer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("linux only")
	}
	for _, network := range []string{"tcp4", "tcp6"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial(network, ln.Addr().String())
		if network == "tcp6" {
			// A dual-stack socket connecting to a v4 address, as the JVM does.
			c, err = net.Dial("tcp", "[::ffff:"+ln.Addr().(*net.TCPAddr).IP.String()+"]:"+itoa(ln.Addr().(*net.TCPAddr).Port))
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		t0 := time.Now()
		if !sameUserPeer(s) {
			t.Fatalf("%s: own socket not recognised", network)
		}
		t.Logf("%s: sameUserPeer %s", network, time.Since(t0))
		uid, err := diagUID(s.RemoteAddr().(*net.TCPAddr), s.LocalAddr().(*net.TCPAddr))
		if err != nil || uid != os.Getuid() {
			t.Errorf("%s: sock_diag uid %d, %v", network, uid, err)
		}
		puid, err := procUID(s.RemoteAddr().(*net.TCPAddr), s.LocalAddr().(*net.TCPAddr))
		if err != nil || puid != os.Getuid() {
			t.Errorf("%s: /proc uid %d, %v", network, puid, err)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestOtherUserRefused: a connection from another OS user is not a peer.
func TestOtherUserRefused(t *testing.T) {
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
	if sameUserPeer(s) {
		t.Fatal("a socket of uid 65534 passed the same-user check")
	}
}
