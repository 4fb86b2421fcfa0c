package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/syncbuf"
	"github.com/tether-dev/tether/plugins/docker"
)

func requireDocker(t testing.TB) *docker.Docker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := docker.New(ctx)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("docker: %v (make deps starts dockerd)", err)
		}
		t.Skipf("docker: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// probeImage builds the static probe program into a FROM scratch image.
func probeImage(t testing.TB, d *docker.Docker) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "probe")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	tag := "tether-test/probe:" + hex.EncodeToString(sum[:6])
	if err := d.BuildImage(ctxT(t), tag, "FROM scratch\nCOPY probe /probe\nENTRYPOINT [\"/probe\"]\n", nil,
		docker.BuildFile{Name: "probe", Mode: 0o755, Data: data}); err != nil {
		t.Fatal(err)
	}
	return tag
}

// containersOf lists the containers Tether made for a workspace.
func containersOf(t *testing.T, ws string) []string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=tether.workspace="+ws).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))
}

func appendConfig(t testing.TB, ws, cfg string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(ws, "tether.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(cfg); err != nil {
		t.Fatal(err)
	}
}

// TestDockerModeSSH: an app container with no proxy settings reaches the
// vpc by IP and by private name through the sidecar and the SSH tunnel;
// nothing is left after it exits.
func TestDockerModeSSH(t *testing.T) {
	d := requireDocker(t)
	w := startCloudWS(t, true)
	img := probeImage(t, d)
	_, httpPort, _ := net.SplitHostPort(w.cloud.HTTPAddr)
	appendConfig(t, w.dir, fmt.Sprintf(`
  - name: container
    type: docker
    docker: {image: %s, args: ["http://%s/", "http://%s:%s/"]}
    interconnect: {enabled: true, proxy: bastion}
`, img, w.cloud.HTTPAddr, w.cloud.HTTPName, httpPort))
	var stdout, stderr syncbuf.Buffer
	start := time.Now()
	cmd := tetherCmd(ctxT(t), "launch", "--workspace", w.dir, "container", "--log-calls")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tether launch: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("launch to exit: %s", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{"http://" + w.cloud.HTTPAddr + "/ -> " + w.cloud.HTTPBody, w.cloud.HTTPName + ":" + httpPort + "/ -> " + w.cloud.HTTPBody} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s\n%s", want, stdout.String(), stderr.String())
		}
	}
	if !strings.Contains(stderr.String(), "probe done") {
		t.Errorf("stderr of the container did not reach stderr:\n%s", stderr.String())
	}
	// The sidecar's upstream is the session channel: its calls are read there.
	calls := 0
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(l, "tether: GET http://") && strings.Contains(l, " -> 200 ") {
			calls++
		}
	}
	if calls != 2 {
		t.Errorf("%d calls logged, want 2:\n%s", calls, stderr.String())
	}
	if left := containersOf(t, w.dir); len(left) > 0 {
		t.Fatalf("containers left: %v", left)
	}
}

// TestDockerJavaDebugAndClean: a JVM in a JDK container reaches the vpc
// with no proxy settings, jdb attaches through the published debug port
// after debugReady, and after SIGKILL of the backend `tether clean` removes
// the containers.
func TestDockerJavaDebugAndClean(t *testing.T) {
	d := requireDocker(t)
	const jdk = "tether-test/jdk17:latest"
	if err := d.RequireImage(ctxT(t), jdk); err != nil {
		out, err := exec.Command("../scripts/jdk-image.sh", jdk).CombinedOutput()
		if err != nil {
			t.Fatalf("jdk image: %v\n%s", err, out)
		}
	}
	w := startCloudWS(t, true)
	classes := compileLoop(t)
	probe := compileProbe(t, t.TempDir())
	_, httpPort, _ := net.SplitHostPort(w.cloud.HTTPAddr)
	_, echoPort, _ := net.SplitHostPort(w.cloud.EchoAddr)
	appendConfig(t, w.dir, fmt.Sprintf(`
  - name: jprobe
    type: docker
    docker:
      image: %s
      command: [java, -cp, /probe, Probe, "http://%s/", "http://%s:%s/", "%s:%s"]
      volumes: ["%s:/probe:ro"]
    interconnect: {enabled: true, proxy: bastion}
  - name: jloop
    type: docker
    docker:
      image: %s
      command: [java, -cp, /loop, Loop]
      volumes: ["%s:/loop:ro"]
    interconnect: {enabled: true, proxy: bastion}
`, jdk, w.cloud.HTTPAddr, w.cloud.HTTPName, httpPort, w.cloud.DBName, echoPort, probe, jdk, classes))

	ctx := ctxT(t)
	out, err := tetherCmd(ctx, "launch", "--workspace", w.dir, "jprobe").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "by name: "+w.cloud.HTTPBody) || !strings.Contains(string(out), "echo: ping") {
		t.Fatalf("java in a container: %v\n%s", err, out)
	}

	lctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := tetherCmd(lctx, "launch", "--workspace", w.dir, "jloop", "--debug")
	addr := startForDebugAddress(t, cmd)
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	if out := jdbBreak(t, addr); !strings.Contains(out, "answer = 4") {
		t.Fatalf("jdb into the container:\n%s", out)
	}
	if len(containersOf(t, w.dir)) != 2 {
		t.Fatalf("want the app and sidecar containers, have %v", containersOf(t, w.dir))
	}
	_ = cmd.Process.Kill() // the backend crashes: its containers stay behind
	_ = cmd.Wait()
	out, err = exec.Command(tetherBin, "clean").CombinedOutput()
	if err != nil {
		t.Fatalf("tether clean: %v\n%s", err, out)
	}
	if left := containersOf(t, w.dir); len(left) > 0 {
		t.Fatalf("after tether clean: %v\n%s", left, out)
	}
}
