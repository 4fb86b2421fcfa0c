package fakecloud

import (
	"os"
	"os/exec"
	"sync"
	"testing"
)

// required maps the binaries the fake cloud runs to the Debian packages that
// ship them.
var required = map[string]string{
	"/usr/sbin/sshd":    "openssh-server",
	"/usr/sbin/dnsmasq": "dnsmasq-base",
	"/usr/sbin/useradd": "passwd",
}

var (
	pkgMu  sync.Mutex
	pkgErr string // non-empty once installation failed in this process
	pkgOK  bool
)

// EnsurePackages makes sure that sshd, dnsmasq and ip are installed, running
// apt-get install when they are not. When that is impossible the test is
// skipped, or fails when CI=true.
func EnsurePackages(t testing.TB) {
	t.Helper()
	pkgMu.Lock()
	defer pkgMu.Unlock()
	if pkgOK {
		return
	}
	if pkgErr == "" {
		pkgErr = ensurePackages()
	}
	if pkgErr != "" {
		skipOrFatal(t, "fakecloud: "+pkgErr)
		return
	}
	pkgOK = true
}

func ensurePackages() string {
	if os.Geteuid() != 0 {
		return "needs root (network namespaces, sshd)"
	}
	var missing []string
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "iproute2")
	}
	for bin, pkg := range required {
		if _, err := os.Stat(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "missing packages " + join(missing) + " and no apt-get"
	}
	install := func() error {
		cmd := exec.Command("apt-get", append([]string{"install", "-y", "--no-install-recommends"}, missing...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.Run()
	}
	if err := install(); err != nil {
		_ = exec.Command("apt-get", "update").Run()
		if out, err := exec.Command("apt-get", append([]string{"install", "-y", "--no-install-recommends"}, missing...)...).CombinedOutput(); err != nil {
			return "apt-get install " + join(missing) + ": " + err.Error() + ": " + tail(string(out), 400)
		}
	}
	return ""
}

func skipOrFatal(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
