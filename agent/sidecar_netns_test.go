//go:build linux

package agent

import (
	"github.com/tether-dev/tether/internal/fakecloud"
	"github.com/tether-dev/tether/internal/relay"
	"github.com/tether-dev/tether/internal/syncbuf"

	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/net/dns/dnsmessage"
)

// scInNetNS runs fn in the network namespace ns (see fakecloud.InNetNS).
func scInNetNS(t testing.TB, ns string, fn func() error) error {
	t.Helper()
	return fakecloud.InNetNS(ns, fn)
}

func scDialIn(t testing.TB, ns, addr string) (net.Conn, error) {
	var c net.Conn
	err := scInNetNS(t, ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	return c, err
}

func scRun(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// scFreeSubnet picks a /30 in 198.51.100.0/24 (TEST-NET-2) that no address
// of the host is in.
func scFreeSubnet(t testing.TB) (host, peer netip.Addr) {
	t.Helper()
	out, err := exec.Command("ip", "-o", "addr").Output()
	if err != nil {
		t.Fatal(err)
	}
	routes, _ := exec.Command("ip", "route").Output()
	for range 100 {
		k := 1 + rand.IntN(62)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(4 * k)}), 30)
		taken := strings.Contains(string(routes), p.String())
		for _, f := range strings.Fields(string(out)) {
			if pp, err := netip.ParsePrefix(f); err == nil && p.Overlaps(pp) {
				taken = true
			}
		}
		if !taken {
			return p.Addr().Next(), p.Addr().Next().Next()
		}
	}
	t.Skip("no free /30 in 198.51.100.0/24")
	return
}

// scNetNS creates a network namespace with a veth to the host (a /30 of
// TEST-NET-2, default route through the host end) and an /etc/netns
// resolv.conf naming Docker's embedded resolver address, 127.0.0.11.
func scNetNS(t *testing.T) (ns string, hostIP, nsIP netip.Addr) {
	t.Helper()
	id := fmt.Sprintf("%04x", (os.Getpid()^rand.IntN(1<<16))&0xffff)
	ns = "tsc" + id
	hostIf, nsIf := "tsch"+id, "tscn"+id
	hostIP, nsIP = scFreeSubnet(t)
	scRun(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	scRun(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	scRun(t, "ip", "link", "set", nsIf, "netns", ns)
	scRun(t, "ip", "addr", "add", hostIP.String()+"/30", "dev", hostIf)
	scRun(t, "ip", "link", "set", hostIf, "up")
	scRun(t, "ip", "-n", ns, "addr", "add", nsIP.String()+"/30", "dev", nsIf)
	scRun(t, "ip", "-n", ns, "link", "set", nsIf, "up")
	scRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
	scRun(t, "ip", "-n", ns, "route", "add", "default", "via", hostIP.String())
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if ns != "" && strings.HasPrefix(filepath.Base(dir), "tsc") {
			os.RemoveAll(dir)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver 127.0.0.11\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return ns, hostIP, nsIP
}

// scBuildAgent builds cmd/tether-agent (static, as for the image).
func scBuildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tether-agent")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/tether-dev/tether/cmd/tether-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// scTables lists the nftables tables of family inet in ns.
func scTables(t testing.TB, ns string) []string {
	t.Helper()
	f, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tb := range ts {
		names = append(names, tb.Name)
	}
	return names
}

// scExchange sends a DNS query from inside ns to server over UDP or TCP.
func scExchange(t testing.TB, ns, server string, q []byte, tcp bool) []byte {
	t.Helper()
	var c net.Conn
	network := "udp"
	if tcp {
		network = "tcp"
	}
	if err := scInNetNS(t, ns, func() error {
		var err error
		c, err = net.DialTimeout(network, server, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial %s %s: %v", network, server, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if tcp {
		if err := writeTCPMsg(c, q); err != nil {
			t.Fatal(err)
		}
		resp, err := readTCPMsg(c)
		if err != nil {
			t.Fatalf("dns over tcp: %v", err)
		}
		return resp
	}
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("dns over udp: %v", err)
	}
	return buf[:n]
}

// TestSidecarNetNS runs the real tether-agent sidecar in a fresh network
// namespace (as root, real kernel: nftables, SO_ORIGINAL_DST, SO_MARK) with a
// channel on the host as its upstream, and checks what an app in the
// namespace sees.
func TestSidecarNetNS(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip")
	}
	bin := scBuildAgent(t)
	ns, hostIP, nsIP := scNetNS(t)

	// Host side: a channel routing everything through a recording tunnel to
	// an echo server, and a relay from the veth address to the channel's
	// loopback SOCKS port.
	ch, rt := scStartChannel(t, "203.0.113.9:81")
	fwd, err := net.Listen("tcp", net.JoinHostPort(hostIP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Close() })
	go func() {
		for {
			c, err := fwd.Accept()
			if err != nil {
				return
			}
			go func() {
				up, err := net.Dial("tcp", ch.SOCKSAddr())
				if err != nil {
					c.Close()
					return
				}
				relay.Conns(c, up)
			}()
		}
	}()

	// Namespace side: the "original" resolver at 127.0.0.11:53 (as Docker's
	// embedded one), and loopback and own-address services.
	dnsSrv := &testDNSServer{addr: netip.MustParseAddr("203.0.113.50")}
	var loopLn, ownLn net.Listener
	if err := scInNetNS(t, ns, func() error {
		pc, err := net.ListenPacket("udp", "127.0.0.11:53")
		if err != nil {
			return err
		}
		t.Cleanup(func() { pc.Close() })
		ln, err := net.Listen("tcp", "127.0.0.11:53")
		if err != nil {
			return err
		}
		t.Cleanup(func() { ln.Close() })
		dnsSrv.serve(pc, ln)
		if loopLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		ownLn, err = net.Listen("tcp", net.JoinHostPort(nsIP.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	scStartEcho(t, loopLn)
	scStartEcho(t, ownLn)

	// The sidecar.
	var stderr syncbuf.Buffer
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "sidecar",
		"--upstream", fwd.Addr().String(), "--domains", "vpc.internal,b.local", "--log-level", "debug")
	cmd.Env = append(os.Environ(), "TETHER_SOCKS_USER="+ch.Username(), "TETHER_SOCKS_PASSWORD="+ch.Password())
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), SidecarReady) {
				close(ready)
				break
			}
		}
		io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("sidecar stderr:\n%s", stderr.String())
		}
	})
	select {
	case <-ready:
		t.Logf("sidecar ready in %v", time.Since(start))
	case err := <-exited:
		exited <- err
		t.Fatalf("sidecar exited: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no ready line in 20s")
	}

	t.Run("tcp by IP", func(t *testing.T) {
		c, err := scDialIn(t, ns, "203.0.113.7:80")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := scRoundTrip(t, c, "hello"); got != "hello|eof" {
			t.Errorf("got %q", got)
		}
		if !slices.Contains(rt.dialled(), "203.0.113.7:80") {
			t.Errorf("tunnel dialled %q", rt.dialled())
		}
	})

	var fake netip.Addr
	t.Run("dns fake address", func(t *testing.T) {
		for i, tcp := range []bool{false, true} {
			resp := scExchange(t, ns, "127.0.0.11:53", dnsQuery(t, uint16(100+i), "db.vpc.internal.", dnsmessage.TypeA), tcp)
			hdr, addrs := parseDNSAnswer(t, resp)
			if hdr.RCode != dnsmessage.RCodeSuccess || len(addrs) != 1 || !netip.MustParsePrefix("198.18.0.0/15").Contains(addrs[0]) {
				t.Fatalf("tcp=%v: %+v %v", tcp, hdr, addrs)
			}
			if fake.IsValid() && fake != addrs[0] {
				t.Errorf("not stable: %v then %v", fake, addrs[0])
			}
			fake = addrs[0]
		}
		// Any nameserver address is ours: port 53 is redirected.
		resp := scExchange(t, ns, "203.0.113.53:53", dnsQuery(t, 102, "DB.vpc.internal.", dnsmessage.TypeA), false)
		if _, addrs := parseDNSAnswer(t, resp); len(addrs) != 1 || addrs[0] != fake {
			t.Errorf("via another nameserver: %v, want %v", addrs, fake)
		}
		resp = scExchange(t, ns, "127.0.0.11:53", dnsQuery(t, 103, "db.vpc.internal.", dnsmessage.TypeAAAA), false)
		if hdr, addrs := parseDNSAnswer(t, resp); hdr.RCode != dnsmessage.RCodeSuccess || len(addrs) != 0 {
			t.Errorf("AAAA: %+v %v", hdr, addrs)
		}
		for _, n := range dnsSrv.asked() {
			if strings.Contains(strings.ToLower(n), "vpc.internal") {
				t.Errorf("original resolver asked %q", n)
			}
		}
	})

	t.Run("tcp by name", func(t *testing.T) {
		if !fake.IsValid() {
			t.Skip("no fake address")
		}
		c, err := scDialIn(t, ns, netip.AddrPortFrom(fake, 5432).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := scRoundTrip(t, c, "select 1"); got != "select 1|eof" {
			t.Errorf("got %q", got)
		}
		if !slices.Contains(rt.dialled(), "db.vpc.internal:5432") {
			t.Errorf("tunnel dialled %q", rt.dialled())
		}
	})

	t.Run("dns forwarded", func(t *testing.T) {
		for i, tcp := range []bool{false, true} {
			resp := scExchange(t, ns, "127.0.0.11:53", dnsQuery(t, uint16(200+i), "outside.example.", dnsmessage.TypeA), tcp)
			hdr, addrs := parseDNSAnswer(t, resp)
			if hdr.ID != uint16(200+i) || len(addrs) != 1 || addrs[0] != dnsSrv.addr {
				t.Errorf("tcp=%v: %+v %v", tcp, hdr, addrs)
			}
		}
		// Through a nameserver that does not exist: only the sidecar's
		// redirect and forward can answer.
		resp := scExchange(t, ns, "203.0.113.53:53", dnsQuery(t, 202, "elsewhere.example.", dnsmessage.TypeA), false)
		if _, addrs := parseDNSAnswer(t, resp); len(addrs) != 1 || addrs[0] != dnsSrv.addr {
			t.Errorf("via another nameserver: %v", addrs)
		}
		if !slices.Contains(dnsSrv.asked(), "elsewhere.example.") {
			t.Errorf("original resolver asked %q", dnsSrv.asked())
		}
		if n := slices.Index(dnsSrv.asked(), "outside.example."); n < 0 {
			t.Errorf("original resolver asked %q", dnsSrv.asked())
		}
	})

	t.Run("getent", func(t *testing.T) {
		// glibc in the namespace, with /etc/netns/NS/resolv.conf bind-mounted.
		if _, err := exec.LookPath("getent"); err != nil {
			t.Skip("no getent")
		}
		for name, want := range map[string]string{"api.b.local": "198.1", "outside.example": "203.0.113.50"} {
			out, err := exec.Command("ip", "netns", "exec", ns, "getent", "ahostsv4", name).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), want) {
				t.Errorf("getent %s: %v %q", name, err, out)
			}
		}
	})

	t.Run("loopback and own address untouched", func(t *testing.T) {
		before := len(rt.dialled())
		for _, ln := range []net.Listener{loopLn, ownLn} {
			c, err := scDialIn(t, ns, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			if got := scRoundTrip(t, c, "local"); got != "local|eof" {
				t.Errorf("%s: got %q", ln.Addr(), got)
			}
			c.Close()
		}
		if after := rt.dialled(); len(after) != before {
			t.Errorf("tunnel dialled %q", after[before:])
		}
	})

	t.Run("refused", func(t *testing.T) {
		c, err := scDialIn(t, ns, "203.0.113.9:81")
		if err != nil {
			return // refused outright is fine too
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		n, err := c.Read(make([]byte, 10))
		if n != 0 || err == nil || os.IsTimeout(err) {
			t.Errorf("read %d, %v; want a reset", n, err)
		}
	})

	t.Run("sigterm removes the table", func(t *testing.T) {
		if got := scTables(t, ns); !slices.Contains(got, SidecarTable) {
			t.Fatalf("tables before: %q", got)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			if err != nil {
				t.Errorf("exit: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no exit after SIGTERM")
		}
		if got := scTables(t, ns); slices.Contains(got, SidecarTable) {
			t.Errorf("tables after: %q", got)
		}
	})
}
