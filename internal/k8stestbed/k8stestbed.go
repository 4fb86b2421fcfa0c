// Package k8stestbed starts the single-node Kubernetes of scripts/k8s for
// tests and loads images into it.
package k8stestbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Testbed is a running testbed.
type Testbed struct {
	Kubeconfig string
	Kubectl    string // path of the kubectl binary
	scripts    string
	started    bool // this process started it
}

// ErrMissing means a prerequisite is missing (exit code 3 of up.sh).
var ErrMissing = errors.New("k8s testbed prerequisite missing")

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	once   sync.Once
	shared *Testbed
	upErr  error
)

// Up starts the testbed (or reuses a healthy one) once per process.
func Up(ctx context.Context, logf func(string, ...any)) (*Testbed, error) {
	once.Do(func() {
		root := repoRoot()
		scripts := filepath.Join(root, "scripts", "k8s")
		wasUp := exec.Command("test", "-f", "/run/tether-k8s/ready").Run() == nil
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, filepath.Join(scripts, "up.sh"))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if logf != nil {
			logf("k8s testbed up.sh took %v:\n%s", time.Since(t0).Round(100*time.Millisecond), errb.String())
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 3 {
			upErr = fmt.Errorf("%w: %s", ErrMissing, strings.TrimSpace(errb.String()))
			return
		}
		if err != nil {
			upErr = fmt.Errorf("scripts/k8s/up.sh: %v\n%s", err, errb.String())
			return
		}
		cache := os.Getenv("TETHER_CACHE")
		if cache == "" {
			cache = "/var/cache/tether"
		}
		ver := os.Getenv("K8S_VERSION")
		if ver == "" {
			ver = "v1.34.4"
		}
		shared = &Testbed{
			Kubeconfig: strings.TrimSpace(lastLine(out.String())),
			Kubectl:    filepath.Join(cache, "k8s-"+ver, "bin", "kubectl"),
			scripts:    scripts,
			started:    !wasUp,
		}
	})
	return shared, upErr
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Start is Up for tests: a missing prerequisite skips the test, unless
// CI=true (then up.sh itself fails and so does the test).
func Start(t testing.TB) *Testbed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	tb, err := Up(ctx, t.Logf)
	if errors.Is(err, ErrMissing) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// Down tears the testbed down if this process started it and
// TETHER_K8S_KEEP is not 1.
func (tb *Testbed) Down() error {
	if !tb.started || os.Getenv("TETHER_K8S_KEEP") == "1" {
		return nil
	}
	out, err := exec.Command(filepath.Join(tb.scripts, "down.sh")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("down.sh: %v: %s", err, out)
	}
	return nil
}

// Run runs kubectl against the testbed.
func (tb *Testbed) Run(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, tb.Kubectl, append([]string{"--kubeconfig", tb.Kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// LoadImages copies Docker images into the testbed's containerd
// (docker save | ctr -n k8s.io images import -).
func (tb *Testbed) LoadImages(ctx context.Context, images ...string) error {
	sh := fmt.Sprintf("docker save %s | ctr -a /run/tether-k8s/containerd.sock -n k8s.io images import -", strings.Join(images, " "))
	out, err := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", sh).CombinedOutput()
	if err != nil {
		return fmt.Errorf("loading %v: %v: %s", images, err, out)
	}
	return nil
}

// BuildStaticImage builds a FROM scratch image holding one static binary as
// its entrypoint (docker build, no registry).
func BuildStaticImage(ctx context.Context, tag, binary string, args ...string) error {
	dir, err := os.MkdirTemp("", "k8stestbed-img-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	data, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "app"), data, 0o755); err != nil {
		return err
	}
	ep := `["/app"`
	for _, a := range args {
		ep += fmt.Sprintf(", %q", a)
	}
	ep += "]"
	df := "FROM scratch\nCOPY app /app\nENTRYPOINT " + ep + "\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker build %s: %v: %s", tag, err, out)
	}
	return nil
}

// BuildEchoServer builds the echoserver command statically into dir.
func BuildEchoServer(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "echoserver")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./internal/k8stestbed/echoserver")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building echoserver: %v: %s", err, out)
	}
	return bin, nil
}

// StopShared tears down the testbed this process started, if any (see
// Down); test mains call it after the tests so nothing is left running.
func StopShared() error {
	if shared == nil {
		return nil
	}
	return shared.Down()
}
