package channel

import (
	"net"
	"testing"
	"time"
)

func TestListenSOCKSExtraAddress(t *testing.T) {
	c, _, _ := startChannel(t, nil)
	addr, err := c.ListenSOCKS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if m := socksGreet(t, conn, 0x02); m != 0x02 {
		t.Fatalf("method %#x", m)
	}
	if st := socksLogin(t, conn, c.Username(), c.Password()); st != 0 {
		t.Fatalf("login status %d", st)
	}
	c.Close()
	time.Sleep(50 * time.Millisecond)
	if c2, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c2.Close()
		t.Fatal("extra listener still open after Close")
	}
}
