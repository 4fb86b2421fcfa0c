package fakecloud

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// staleName matches the namespaces of a Cloud: tc<pid hex>n<counter hex>-<role>.
var staleName = regexp.MustCompile(`^(tc([0-9a-f]+)n[0-9a-f]+)-(bastion|vpc)$`)

// reapStale removes what Clouds of test processes that were killed (so
// their t.Cleanup never ran) left behind: their namespaces and processes,
// host veth, unreachable route, /etc/netns entry and temp dir. Only names of
// this package's pattern whose process is gone are touched.
func reapStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	done := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		m := staleName.FindStringSubmatch(f[0])
		if m == nil || done[m[1]] {
			continue
		}
		pid, err := strconv.ParseInt(m[2], 16, 64)
		if err != nil || int(pid) == os.Getpid() || unix.Kill(int(pid), 0) != unix.ESRCH {
			continue // ours, or its test process is still running
		}
		done[m[1]] = true
		reap(m[1])
	}
}

func reap(name string) {
	if name == "" || !strings.HasPrefix(name, "tc") {
		return
	}
	bastion, vpc := name+"-bastion", name+"-vpc"
	// The vpc's /24 is its unreachable route on the host.
	if out, err := exec.Command("ip", "-n", vpc, "-4", "-o", "addr", "show").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if p, err := netip.ParsePrefix(f); err == nil && !p.Addr().IsLoopback() {
				_ = run("ip", "route", "del", "unreachable", p.Masked().String())
				break
			}
		}
	}
	for _, ns := range []string{bastion, vpc} {
		for _, pid := range nsPIDs(ns) {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		_ = run("ip", "netns", "del", ns)
	}
	_ = exec.Command("ip", "link", "del", name+"h").Run()
	_ = os.RemoveAll("/etc/netns/" + bastion)
	if dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "fakecloud-"+name+"-*")); len(dirs) > 0 {
		for _, d := range dirs {
			_ = os.RemoveAll(d)
		}
	}
}
