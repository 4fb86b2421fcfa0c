package fakecloud

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetNS runs fn on a fresh OS thread that has joined the named network
// namespace. Sockets created by fn stay in that namespace for their whole
// life, whichever thread uses them later. The thread is never handed back
// to the Go scheduler: it exits with the goroutine, so no other goroutine can
// run in the wrong namespace.
func inNetNS(ns string, fn func() error) error { return InNetNS(ns, fn) }

// InNetNS runs fn on a fresh OS thread that has joined the network
// namespace ns (from `ip netns add`); sockets fn creates stay in ns. Other
// tests that build their own namespaces use it too.
func InNetNS(ns string, fn func() error) error {
	if ns == "" {
		return fmt.Errorf("fakecloud: empty namespace name")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// listenIn creates a TCP listener inside the network namespace ns.
func listenIn(ns, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNetNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// dialIn connects from inside the network namespace ns.
func dialIn(ctx context.Context, ns, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetNS(ns, func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}
