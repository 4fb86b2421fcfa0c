// Package fakecloud builds a small fake cloud from Linux network namespaces
// for integration tests: a bastion running a real OpenSSH sshd, and a private
// vpc with DNS and Go test services that only the bastion can reach.
//
// Layout of one Cloud (all names and subnets unique per Start call):
//
//	host --veth 10.201.a.b/30-- bastion (sshd, no ip forwarding) --veth-- vpc 10.(96+k/256).(k%256).0/24
//	                                                                         .1 bastion, .2 services + dnsmasq
//
// The host gets "unreachable" routes for the vpc range, so anything that
// reaches a vpc service from the host must have gone through sshd.
package fakecloud

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// Zone is the private DNS zone served inside the vpc.
const Zone = "vpc.internal"

// TestUser is the account the bastion's sshd accepts (key only).
const TestUser = "tetherdev"

// Cloud is one running fake cloud. Fields are set by Start; HostPublicKey
// changes on RotateHostKey. Methods are not safe for concurrent use with
// StopSSHD/StartSSHD/RotateHostKey.
type Cloud struct {
	Name      string // unique prefix of every name this Cloud created
	BastionNS string // network namespace of the bastion
	VPCNS     string // network namespace of the vpc

	SSHAddr      string // "ip:port" of sshd on the bastion's host-facing veth
	BastionVPCIP string // the bastion's address inside the vpc (bind reverse forwards here)
	VPCCIDR      string // the vpc range, unreachable from the host
	ServiceIP    string // vpc address of the services and of the DNS server
	DBName       string // private name resolving to ServiceIP, "db.vpc.internal"
	HTTPName     string // private name of the HTTP service, "http.vpc.internal"
	HTTPAddr     string // "ip:port" of the HTTP service (GET / and GET /bytes?n=N)
	HTTPBody     string // body of GET /
	EchoAddr     string // "ip:port" of the TCP echo service
	ClosedAddr   string // "ip:port" in the vpc where nothing listens (refused)

	User           string        // SSH user
	IdentityFile   string        // private key of User (OpenSSH format, no passphrase)
	KnownHostsFile string        // known_hosts holding the bastion's current host key
	HostPublicKey  ssh.PublicKey // the bastion's current host key
	ClientSigner   ssh.Signer    // the same key as IdentityFile

	t        testing.TB
	dir      string // per-Cloud directory readable by the test user
	hostVeth string
	route    string // the unreachable route added on the host
	netnsEtc string // /etc/netns/<bastion>

	mu         sync.Mutex
	procs      []*exec.Cmd // dnsmasq and friends, killed by PID in cleanup
	sshd       *exec.Cmd
	closers    []func()
	hostKey    ssh.Signer
	sshdExited chan error
}

var (
	counter       atomic.Int32
	reapStaleOnce sync.Once
)

// Start builds a fake cloud and registers its tear-down with t.Cleanup.
func Start(t testing.TB) *Cloud {
	t.Helper()
	EnsurePackages(t)
	reapStaleOnce.Do(reapStale)
	n := counter.Add(1)
	name := fmt.Sprintf("tc%x%c%x", os.Getpid(), 'n', n)
	if len(name)+2 > 15 {
		t.Fatalf("fakecloud: name %q too long for interface names", name)
	}
	c := &Cloud{
		t:         t,
		Name:      name,
		BastionNS: name + "-bastion",
		VPCNS:     name + "-vpc",
		User:      TestUser,
		DBName:    "db." + Zone,
		HTTPName:  "http." + Zone,
	}
	t.Cleanup(c.teardown)
	dir, err := os.MkdirTemp("", "fakecloud-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	// sshd reads AuthorizedKeysFile as the test user.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.setupNetwork(); err != nil {
		t.Fatalf("fakecloud: network: %v", err)
	}
	if err := c.startDNS(); err != nil {
		t.Fatalf("fakecloud: dns: %v", err)
	}
	if err := c.startServices(); err != nil {
		t.Fatalf("fakecloud: services: %v", err)
	}
	if err := c.setupSSH(); err != nil {
		t.Fatalf("fakecloud: ssh: %v", err)
	}
	if err := c.StartSSHD(); err != nil {
		t.Fatalf("fakecloud: %v", err)
	}
	return c
}

// withLock runs fn while holding a machine-wide lock, so that parallel test
// binaries do not pick the same subnets or race on useradd.
func withLock(fn func() error) error {
	f, err := os.OpenFile("/run/tether-fakecloud.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn()
}

func (c *Cloud) setupNetwork() error {
	return withLock(func() error {
		out, err := exec.Command("ip", "-4", "route", "show", "table", "all").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip route: %v: %s", err, out)
		}
		routes := string(out)
		k := -1
		start := (os.Getpid()*7 + int(counter.Load())*13) % 4096
		for i := 0; i < 4096; i++ {
			j := (start + i) % 4096
			if !strings.Contains(routes, vpcNet(j)) && !strings.Contains(routes, hostNet(j)) {
				k = j
				break
			}
		}
		if k < 0 {
			return errors.New("no free subnet")
		}
		c.VPCCIDR = vpcNet(k) + "/24"
		base := vpcNet(k)[:len(vpcNet(k))-1] // "10.x.y."
		c.BastionVPCIP = base + "1"
		c.ServiceIP = base + "2"
		hb := hostNet(k)
		hbase := hb[:strings.LastIndex(hb, ".")+1]
		last, _ := strconv.Atoi(hb[strings.LastIndex(hb, ".")+1:])
		hostIP := hbase + strconv.Itoa(last+1)
		bastionIP := hbase + strconv.Itoa(last+2)
		c.SSHAddr = net.JoinHostPort(bastionIP, "22")

		// The unreachable route goes first: no packet for the vpc may leave
		// through the host's default route.
		if err := run("ip", "route", "add", "unreachable", c.VPCCIDR); err != nil {
			return err
		}
		c.route = c.VPCCIDR
		if err := run("ip", "netns", "add", c.BastionNS); err != nil {
			return err
		}
		if err := run("ip", "netns", "add", c.VPCNS); err != nil {
			return err
		}
		c.hostVeth = c.Name + "h"
		bh, bv, vb := c.Name+"b", c.Name+"v", c.Name+"p"
		steps := [][]string{
			{"ip", "link", "add", c.hostVeth, "type", "veth", "peer", "name", bh, "netns", c.BastionNS},
			{"ip", "addr", "add", hostIP + "/30", "dev", c.hostVeth},
			{"ip", "link", "set", c.hostVeth, "up"},
			{"ip", "-n", c.BastionNS, "addr", "add", bastionIP + "/30", "dev", bh},
			{"ip", "-n", c.BastionNS, "link", "set", bh, "up"},
			{"ip", "-n", c.BastionNS, "link", "set", "lo", "up"},
			{"ip", "-n", c.BastionNS, "link", "add", bv, "type", "veth", "peer", "name", vb, "netns", c.VPCNS},
			{"ip", "-n", c.BastionNS, "addr", "add", c.BastionVPCIP + "/24", "dev", bv},
			{"ip", "-n", c.BastionNS, "link", "set", bv, "up"},
			{"ip", "-n", c.VPCNS, "addr", "add", c.ServiceIP + "/24", "dev", vb},
			{"ip", "-n", c.VPCNS, "link", "set", vb, "up"},
			{"ip", "-n", c.VPCNS, "link", "set", "lo", "up"},
			{"ip", "netns", "exec", c.BastionNS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"},
			{"ip", "netns", "exec", c.VPCNS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"},
		}
		for _, s := range steps {
			if err := run(s...); err != nil {
				return err
			}
		}
		return nil
	})
}

func vpcNet(k int) string  { return fmt.Sprintf("10.%d.%d.0", 96+k/256, k%256) }
func hostNet(k int) string { return fmt.Sprintf("10.201.%d.%d", k/64, (k%64)*4) }

func run(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ExecIn runs argv inside the network namespace ns and returns its combined
// output.
func (c *Cloud) ExecIn(ns string, argv ...string) ([]byte, error) {
	if ns == "" || len(argv) == 0 {
		return nil, errors.New("fakecloud: ExecIn needs a namespace and a command")
	}
	return exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...).CombinedOutput()
}

// startProc starts argv inside ns, logging to dir/<logName>.log.
func (c *Cloud) startProc(ns, logName string, argv ...string) (*exec.Cmd, error) {
	logf, err := os.Create(filepath.Join(c.dir, logName+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

func (c *Cloud) startDNS() error {
	c.netnsEtc = filepath.Join("/etc/netns", c.BastionNS)
	if err := os.MkdirAll(c.netnsEtc, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.netnsEtc, "resolv.conf"),
		[]byte("nameserver "+c.ServiceIP+"\noptions timeout:1 attempts:2\n"), 0o644); err != nil {
		return err
	}
	cmd, err := c.startProc(c.VPCNS, "dnsmasq", "/usr/sbin/dnsmasq",
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--listen-address="+c.ServiceIP, "--bind-interfaces", "--user=root",
		"--pid-file="+filepath.Join(c.dir, "dnsmasq.pid"),
		"--local=/"+Zone+"/",
		"--host-record="+c.DBName+","+c.ServiceIP,
		"--host-record="+c.HTTPName+","+c.ServiceIP)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.procs = append(c.procs, cmd)
	c.mu.Unlock()
	// Wait until it answers, from the bastion.
	deadline := time.Now().Add(30 * time.Second)
	for {
		// getent resolves through /etc/netns/<bastion>/resolv.conf, as sshd will.
		out, err := c.ExecIn(c.BastionNS, "getent", "ahostsv4", c.DBName)
		addrs := strings.Fields(string(out))
		if err == nil && len(addrs) > 0 && addrs[0] == c.ServiceIP {
			return nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(c.dir, "dnsmasq.log"))
			return fmt.Errorf("dnsmasq not answering: %v %v: %s", err, addrs, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// DialFromVPC connects to addr from inside the vpc.
func (c *Cloud) DialFromVPC(ctx context.Context, addr string) (net.Conn, error) {
	return dialIn(ctx, c.VPCNS, addr)
}

// DialFromBastion connects to addr from inside the bastion.
func (c *Cloud) DialFromBastion(ctx context.Context, addr string) (net.Conn, error) {
	return dialIn(ctx, c.BastionNS, addr)
}

// ListenInVPC listens on addr inside the vpc; the listener is closed in
// cleanup.
func (c *Cloud) ListenInVPC(addr string) (net.Listener, error) {
	ln, err := listenIn(c.VPCNS, addr)
	if err != nil {
		return nil, err
	}
	c.addCloser(func() { ln.Close() })
	return ln, nil
}

// ListenInBastion listens on addr inside the bastion (to occupy a port);
// the listener is closed in cleanup.
func (c *Cloud) ListenInBastion(addr string) (net.Listener, error) {
	ln, err := listenIn(c.BastionNS, addr)
	if err != nil {
		return nil, err
	}
	c.addCloser(func() { ln.Close() })
	return ln, nil
}

func (c *Cloud) addCloser(fn func()) {
	c.mu.Lock()
	c.closers = append(c.closers, fn)
	c.mu.Unlock()
}

// teardown removes everything Start created. It refuses to touch anything
// whose name is empty.
func (c *Cloud) teardown() {
	t := c.t
	if c.Name == "" || c.BastionNS == "" || c.VPCNS == "" {
		t.Errorf("fakecloud: refusing tear-down with empty names")
		return
	}
	if t.Failed() && c.dir != "" {
		for _, f := range []string{"sshd.log", "dnsmasq.log"} {
			if b, err := os.ReadFile(filepath.Join(c.dir, f)); err == nil {
				t.Logf("fakecloud %s:\n%s", f, tail(string(b), 4000))
			}
		}
	}
	c.mu.Lock()
	closers := c.closers
	c.closers = nil
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	c.StopSSHD()
	for _, p := range procs {
		stopProc(p)
	}
	// Anything still running in our namespaces was started by us (ExecIn).
	for _, ns := range []string{c.BastionNS, c.VPCNS} {
		for _, pid := range nsPIDs(ns) {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	for _, ns := range []string{c.BastionNS, c.VPCNS} {
		if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
			if err := run("ip", "netns", "del", ns); err != nil {
				t.Errorf("fakecloud: %v", err)
			}
		}
	}
	if c.hostVeth != "" {
		if _, err := net.InterfaceByName(c.hostVeth); err == nil {
			_ = run("ip", "link", "del", c.hostVeth)
		}
	}
	if c.route != "" {
		if err := run("ip", "route", "del", "unreachable", c.route); err != nil {
			t.Errorf("fakecloud: %v", err)
		}
	}
	if c.netnsEtc != "" && strings.HasPrefix(c.netnsEtc, "/etc/netns/"+c.Name) {
		_ = os.RemoveAll(c.netnsEtc)
	}
	if c.dir != "" && strings.Contains(c.dir, "fakecloud-"+c.Name) {
		_ = os.RemoveAll(c.dir)
	}
}

// nsPIDs lists the processes in network namespace ns.
func nsPIDs(ns string) []int {
	if ns == "" {
		return nil
	}
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// stopProc ends a process we started, by PID: SIGTERM, then SIGKILL.
func stopProc(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(unix.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
