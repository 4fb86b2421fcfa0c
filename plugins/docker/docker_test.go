package docker

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/progress"
)

// The tests run against the real daemon (scripts/docker.sh starts one). They
// skip when no daemon answers, unless CI=true.

var (
	setupOnce sync.Once
	setupD    *Docker
	setupErr  error
	testImage string // FROM scratch + testbin; "app" and "sidecar" modes
	testBin   string // the static testbin binary
)

func TestMain(m *testing.M) {
	code := m.Run()
	if setupD != nil {
		setupD.Close()
	}
	if testBin != "" {
		os.RemoveAll(filepath.Dir(testBin))
	}
	os.Exit(code)
}

// needDocker returns a client and the test image, building it once.
func needDocker(t *testing.T) *Docker {
	t.Helper()
	setupOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		d, err := New(ctx)
		if err != nil {
			setupErr = err
			return
		}
		setupD = d
		dir, err := os.MkdirTemp("", "tether-docker-test")
		if err != nil {
			setupErr = err
			return
		}
		testBin = filepath.Join(dir, "testbin")
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", testBin, "./testdata/testbin")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			setupErr = errors.New("build testbin: " + err.Error() + "\n" + string(out))
			return
		}
		bin, err := os.ReadFile(testBin)
		if err != nil {
			setupErr = err
			return
		}
		sum := sha256.Sum256(bin)
		testImage = "tether-test/docker-plugin:" + hex.EncodeToString(sum[:6])
		removeStaleTestImages(ctx, d, testImage)
		if _, ok, err := d.imageExists(ctx, testImage); err != nil || ok {
			setupErr = err
			return
		}
		setupErr = d.BuildImage(ctx, testImage, "FROM scratch\nCOPY testbin /testbin\nENTRYPOINT [\"/testbin\"]\nCMD [\"app\"]\n",
			map[string]string{"tether.test": "true"}, BuildFile{Name: "testbin", Mode: 0o755, Data: bin})
	})
	if setupD == nil || setupErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("docker unavailable under CI=true: %v", setupErr)
		}
		t.Skipf("docker unavailable (run scripts/docker.sh): %v", setupErr)
	}
	return setupD
}

func sessionID(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "test-" + hex.EncodeToString(b)
}

// sessionContainers lists the containers labelled with session.
func sessionContainers(t *testing.T, d *Docker, session string) []container.Summary {
	t.Helper()
	l, err := d.api.ContainerList(context.Background(), container.ListOptions{
		All: true, Filters: filters.NewArgs(filters.Arg("label", LabelSession+"="+session)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func assertNoContainers(t *testing.T, d *Docker, session string) {
	t.Helper()
	if l := sessionContainers(t, d, session); len(l) != 0 {
		var names []string
		for _, c := range l {
			names = append(names, strings.Join(c.Names, ","))
		}
		t.Errorf("containers of session %s left behind: %v", session, names)
	}
}

// cleanupSession removes whatever a failing test left.
func cleanupSession(t *testing.T, d *Docker, session string) {
	t.Cleanup(func() {
		for _, c := range sessionContainers(t, d, session) {
			d.api.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		}
	})
}

// output collects Start's out callback per stream.
type output struct {
	mu      sync.Mutex
	streams map[string]*strings.Builder
}

func (o *output) add(stream string, data []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.streams == nil {
		o.streams = map[string]*strings.Builder{}
	}
	if o.streams[stream] == nil {
		o.streams[stream] = &strings.Builder{}
	}
	o.streams[stream].Write(data)
}

func (o *output) get(stream string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if b := o.streams[stream]; b != nil {
		return b.String()
	}
	return ""
}

func (o *output) waitFor(t *testing.T, stream, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(o.get(stream), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q; stdout=%q stderr=%q", stream, s, o.get("stdout"), o.get("stderr"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func baseSpec(t *testing.T, session string) RunSpec {
	return RunSpec{
		Session:      session,
		Workspace:    t.TempDir(),
		Image:        testImage,
		Args:         []string{"app"},
		SidecarImage: testImage,
		SidecarArgs:  []string{"sidecar"},
	}
}

func TestStartLogsPortsDebugStop(t *testing.T) {
	d := needDocker(t)
	session := sessionID(t)
	cleanupSession(t, d, session)

	spec := baseSpec(t, session)
	if err := os.WriteFile(filepath.Join(spec.Workspace, "hello.txt"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	spec.Ports = []string{"127.0.0.1:" + strconv.Itoa(port) + ":8080"}
	spec.Volumes = []string{"./:/data:ro"}
	spec.Env = map[string]string{"FOO": "bar", "READ_FILE": "/data/hello.txt"}
	spec.SidecarEnv = map[string]string{"TETHER_TEST": "1"}
	spec.DebugPort = 5005

	var msgs []string
	var mu sync.Mutex
	ctx := progress.With(context.Background(), progress.Func(func(m string, _ int) {
		mu.Lock()
		msgs = append(msgs, m)
		mu.Unlock()
	}))
	var out output
	start := time.Now()
	s, err := d.Start(ctx, spec, out.add)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %s", time.Since(start))
	defer s.Stop(context.Background())

	// Logs arrive, stdout and stderr apart.
	out.waitFor(t, "stdout", "app-stdout hello FOO=bar")
	out.waitFor(t, "stderr", "app-stderr hello")
	out.waitFor(t, "stdout", `file /data/hello.txt: "from the host"`)
	if strings.Contains(out.get("stdout"), "app-stderr") || strings.Contains(out.get("stderr"), "app-stdout") {
		t.Errorf("streams mixed: stdout=%q stderr=%q", out.get("stdout"), out.get("stderr"))
	}

	// The published port answers on loopback (declared on the sidecar, served by the app).
	addr, ok := s.PublishedAddress("8080")
	if want := "127.0.0.1:" + strconv.Itoa(port); !ok || addr != want {
		t.Fatalf("PublishedAddress(8080) = %q, %v; want %s", addr, ok, want)
	}
	var body []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/ping")
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if string(body) != "pong" {
		t.Errorf("body %q, want pong", body)
	}
	out.waitFor(t, "stdout", "request /ping")

	// The debug port is published on a free loopback port.
	da := s.DebugAddress()
	if !strings.HasPrefix(da, "127.0.0.1:") {
		t.Fatalf("DebugAddress = %q", da)
	}
	out.waitFor(t, "stdout", "Listening for transport dt_socket at address: 5005")
	c, err := net.DialTimeout("tcp", da, 5*time.Second)
	if err != nil {
		t.Fatalf("dial debug address %s: %v", da, err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if line != "debug\n" {
		t.Errorf("debug port answered %q", line)
	}

	// Container parameters and labels.
	bg := context.Background()
	sc, err := d.api.ContainerInspect(bg, s.SidecarID)
	if err != nil {
		t.Fatal(err)
	}
	app, err := d.api.ContainerInspect(bg, s.AppID)
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.HostConfig.CapAdd; len(got) != 1 || !strings.Contains(strings.ToUpper(got[0]), "NET_ADMIN") {
		t.Errorf("sidecar CapAdd = %v", got)
	}
	if sc.HostConfig.Privileged || app.HostConfig.Privileged {
		t.Error("privileged container")
	}
	if got := sc.HostConfig.ExtraHosts; len(got) != 1 || got[0] != "host.docker.internal:host-gateway" {
		t.Errorf("sidecar ExtraHosts = %v", got)
	}
	if got := string(app.HostConfig.NetworkMode); got != "container:"+s.SidecarID {
		t.Errorf("app NetworkMode = %q", got)
	}
	for _, ins := range []container.InspectResponse{sc, app} {
		l := ins.Config.Labels
		want := map[string]string{
			LabelManaged:   "true",
			LabelSession:   session,
			LabelOwnerPID:  strconv.Itoa(os.Getpid()),
			LabelOwnerUID:  strconv.Itoa(os.Getuid()),
			LabelOwnerHost: hostname,
			LabelWorkspace: spec.Workspace,
		}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("%s: label %s = %q, want %q", ins.Name, k, l[k], v)
			}
		}
	}
	if !containsEnv(sc.Config.Env, "TETHER_TEST=1") || !containsEnv(app.Config.Env, "FOO=bar") {
		t.Errorf("env: sidecar %v app %v", sc.Config.Env, app.Config.Env)
	}
	mu.Lock()
	if len(msgs) == 0 {
		t.Error("no progress reported")
	}
	t.Logf("progress: %q", msgs)
	mu.Unlock()

	// Stop removes both; it is idempotent.
	start = time.Now()
	if err := s.Stop(bg); err != nil {
		t.Fatal(err)
	}
	t.Logf("Stop took %s", time.Since(start))
	if err := s.Stop(bg); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	for _, id := range []string{s.SidecarID, s.AppID} {
		if _, err := d.api.ContainerInspect(bg, id); !isNotFound(err) {
			t.Errorf("container %.12s still there after Stop (err %v)", id, err)
		}
	}
	assertNoContainers(t, d, session)
	code, err := s.Wait(bg)
	t.Logf("Wait after Stop: %d, %v", code, err)
	out.waitFor(t, "stdout", "app terminating")
}

func containsEnv(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}

func TestWaitExitCode(t *testing.T) {
	d := needDocker(t)
	session := sessionID(t)
	cleanupSession(t, d, session)
	spec := baseSpec(t, session)
	spec.Args = []string{"app", "-exit", "3"}
	var out output
	s, err := d.Start(context.Background(), spec, out.add)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code, err := s.Wait(ctx)
	if err != nil || code != 3 {
		t.Fatalf("Wait = %d, %v; want 3, nil", code, err)
	}
	// All output is delivered when Wait returns.
	if !strings.Contains(out.get("stdout"), "exiting 3") {
		t.Errorf("stdout %q lacks the last line", out.get("stdout"))
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertNoContainers(t, d, session)
}

func TestCommandOverridesEntrypoint(t *testing.T) {
	d := needDocker(t)
	session := sessionID(t)
	cleanupSession(t, d, session)
	spec := baseSpec(t, session)
	spec.Command = []string{"/testbin", "app"}
	spec.Args = []string{"-exit", "0"}
	spec.Workdir = "/data"
	spec.User = "1234:1234"
	var out output
	s, err := d.Start(context.Background(), spec, out.add)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	if code, err := s.Wait(context.Background()); code != 0 || err != nil {
		t.Fatalf("Wait = %d, %v; stdout %q stderr %q", code, err, out.get("stdout"), out.get("stderr"))
	}
	ins, err := d.api.ContainerInspect(context.Background(), s.AppID)
	if err != nil {
		t.Fatal(err)
	}
	if ins.Config.User != "1234:1234" || ins.Config.WorkingDir != "/data" {
		t.Errorf("user %q workdir %q", ins.Config.User, ins.Config.WorkingDir)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertNoContainers(t, d, session)
}

func TestSidecarFailures(t *testing.T) {
	d := needDocker(t)
	for _, tc := range []struct {
		name    string
		args    []string
		kind    error
		message []string
	}{
		{"exits", []string{"sidecar", "-mode", "fail"}, ErrNoNetAdmin,
			[]string{"exited before", "operation not permitted", "NET_ADMIN"}},
		{"silent", []string{"sidecar", "-mode", "silent"}, ErrSidecarNotReady,
			[]string{`did not print "tether-sidecar ready" within 1s`, "sidecar: starting"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			session := sessionID(t)
			cleanupSession(t, d, session)
			spec := baseSpec(t, session)
			spec.SidecarArgs = tc.args
			spec.ReadyTimeout = time.Second
			s, err := d.Start(context.Background(), spec, nil)
			if err == nil {
				s.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %v is not %v", err, tc.kind)
			}
			for _, m := range tc.message {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error lacks %q:\n%v", m, err)
				}
			}
			t.Logf("error: %v", err)
			assertNoContainers(t, d, session)
		})
	}
}

func TestSidecarDiesUnderApp(t *testing.T) {
	d := needDocker(t)
	session := sessionID(t)
	cleanupSession(t, d, session)
	spec := baseSpec(t, session)
	spec.SidecarArgs = []string{"sidecar", "-die-after", "1s"}
	s, err := d.Start(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = s.Wait(ctx)
	if err == nil || !strings.Contains(err.Error(), "sidecar exited (code 7)") || !strings.Contains(err.Error(), "upstream lost") {
		t.Fatalf("Wait error = %v", err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertNoContainers(t, d, session)
}

func TestImageMissing(t *testing.T) {
	d := needDocker(t)
	session := sessionID(t)
	cleanupSession(t, d, session)
	spec := baseSpec(t, session)
	spec.Image = "tether-test/does-not-exist:nope"
	_, err := d.Start(context.Background(), spec, nil)
	if !errors.Is(err, ErrImageNotFound) {
		t.Fatalf("error %v is not ErrImageNotFound", err)
	}
	want := "image tether-test/does-not-exist:nope not found locally: build or load it — no registry is reachable"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	assertNoContainers(t, d, session)
}

func TestPortTaken(t *testing.T) {
	d := needDocker(t)
	session := sessionID(t)
	cleanupSession(t, d, session)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	spec := baseSpec(t, session)
	spec.Ports = []string{"127.0.0.1:" + port + ":8080"}
	_, err = d.Start(context.Background(), spec, nil)
	if !errors.Is(err, ErrPortTaken) {
		t.Fatalf("error %v is not ErrPortTaken", err)
	}
	if !strings.Contains(err.Error(), "cannot publish port 127.0.0.1:"+port+": it is already in use") {
		t.Errorf("unclear error: %v", err)
	}
	t.Logf("error: %v", err)
	assertNoContainers(t, d, session)
}

func TestDaemonDown(t *testing.T) {
	for _, host := range []string{"unix:///nonexistent/tether/docker.sock", "tcp://127.0.0.1:1"} {
		t.Run(host, func(t *testing.T) {
			t.Setenv("DOCKER_HOST", host)
			t.Setenv("DOCKER_TLS_VERIFY", "")
			d, err := New(context.Background())
			if err == nil {
				d.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrDaemonNotRunning) {
				t.Errorf("error %v is not ErrDaemonNotRunning", err)
			}
			if c := errcat.Of(err); c != errcat.Environment {
				t.Errorf("category %q, want environment", c)
			}
			want := "Docker daemon not running at " + host + ": start it (sudo systemctl start docker, or dockerd)"
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
}

func TestGatewayIP(t *testing.T) {
	d := needDocker(t)
	gw, err := d.GatewayIP(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(gw)
	if ip == nil || ip.To4() == nil {
		t.Fatalf("GatewayIP = %q", gw)
	}
	if ifc, err := net.InterfaceByName("docker0"); err == nil {
		addrs, _ := ifc.Addrs()
		var found bool
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				found = true
			}
		}
		if !found {
			t.Errorf("GatewayIP %s is not an address of docker0 (%v)", gw, addrs)
		}
	}
	t.Logf("gateway %s", gw)
}

func TestBuildAgentImage(t *testing.T) {
	d := needDocker(t)
	ctx := context.Background()
	tag := "tether-test/agent:" + sessionID(t)
	t.Cleanup(func() {
		d.api.ImageRemove(ctx, tag, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	bin := filepath.Join(t.TempDir(), "tether-agent")
	data, err := os.ReadFile(testBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	build := func() []string {
		var msgs []string
		pctx := progress.With(ctx, progress.Func(func(m string, _ int) { msgs = append(msgs, m) }))
		start := time.Now()
		if err := d.BuildAgentImage(pctx, bin, tag); err != nil {
			t.Fatal(err)
		}
		t.Logf("BuildAgentImage took %s (%d progress messages)", time.Since(start), len(msgs))
		return msgs
	}
	if msgs := build(); len(msgs) == 0 {
		t.Error("first build reported no progress")
	}
	ins, _, err := d.imageExists(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	if got := ins.Config.Entrypoint; len(got) != 1 || got[0] != "/tether-agent" {
		t.Errorf("entrypoint %v", got)
	}
	first := ins.ID
	if msgs := build(); len(msgs) != 0 {
		t.Errorf("second build was not skipped: %q", msgs)
	}
	// A changed binary is rebuilt.
	if err := os.WriteFile(bin, append(data, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	build()
	ins, _, _ = d.imageExists(ctx, tag)
	if ins.ID == first {
		t.Error("changed agent binary not rebuilt")
	}
	if _, ok, _ := d.imageExists(ctx, first); ok {
		t.Error("the previous agent image was left behind")
	}
	// The image runs: the sidecar mode of the test binary stands in for tether-agent.
	session := sessionID(t)
	cleanupSession(t, d, session)
	spec := baseSpec(t, session)
	spec.SidecarImage = tag
	s, err := d.Start(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestClean(t *testing.T) {
	d := needDocker(t)
	ctx := context.Background()
	self := Self()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.Process.Pid
	session := sessionID(t)
	cleanupSession(t, d, session)

	mk := func(role string, o Owner) string {
		l := o.Labels(session, "/ws", role)
		name := "tether-" + session + "-" + role
		c, err := d.api.ContainerCreate(ctx, &container.Config{Image: testImage, Labels: l}, nil, nil, nil, name)
		if err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	deadOurs := mk("dead-ours", Owner{PID: deadPID, UID: self.UID, Host: self.Host})
	otherUID := mk("other-uid", Owner{PID: deadPID, UID: self.UID + 1, Host: self.Host})
	otherHost := mk("other-host", Owner{PID: deadPID, UID: self.UID, Host: self.Host + "-elsewhere"})
	liveOurs := mk("live-ours", self)
	reused := mk("reused-pid", Owner{PID: self.PID, UID: self.UID, Host: self.Host, Start: "1"})

	removed, err := Clean(ctx, d, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("removed %v", removed)
	exists := func(id string) bool {
		_, err := d.api.ContainerInspect(ctx, id)
		return !isNotFound(err)
	}
	for id, want := range map[string]bool{deadOurs: false, reused: false, otherUID: true, otherHost: true, liveOurs: true} {
		if exists(id) != want {
			c, _ := d.api.ContainerInspect(ctx, id)
			t.Errorf("container %s exists=%v, want %v", c.Name, !want, want)
		}
	}
	// Another process's Clean may have taken the dead ones first: only check
	// that nothing that must stay was reported.
	for _, n := range removed {
		if strings.HasPrefix(n, "tether-"+session+"-") && !strings.HasSuffix(n, "-dead-ours") && !strings.HasSuffix(n, "-reused-pid") {
			t.Errorf("Clean reported %s", n)
		}
	}
	// all=true would also take the live one, but it would take other live
	// sessions of this machine's user too: checked without a daemon in
	// TestShouldClean.
}

func TestShouldClean(t *testing.T) {
	self := Owner{PID: 100, UID: 1000, Host: "h"}
	lab := func(uid, host string) map[string]string {
		return map[string]string{LabelManaged: "true", LabelOwnerUID: uid, LabelOwnerHost: host, LabelOwnerPID: "5"}
	}
	aliveF := func(map[string]string) bool { return true }
	deadF := func(map[string]string) bool { return false }
	for _, tc := range []struct {
		labels   map[string]string
		all      bool
		isAlive  func(map[string]string) bool
		want     bool
		describe string
	}{
		{lab("1000", "h"), false, deadF, true, "ours, dead"},
		{lab("1000", "h"), false, aliveF, false, "ours, alive"},
		{lab("1000", "h"), true, aliveF, true, "ours, alive, all"},
		{lab("1001", "h"), true, deadF, false, "other uid, all"},
		{lab("1000", "other"), true, deadF, false, "other host, all"},
		{map[string]string{LabelOwnerUID: "1000", LabelOwnerHost: "h"}, true, deadF, false, "not managed"},
	} {
		if got := shouldClean(tc.labels, self, tc.all, tc.isAlive); got != tc.want {
			t.Errorf("%s: shouldClean = %v", tc.describe, got)
		}
	}
	// The real liveness check: this process is alive, a dead pid and a reused one are not.
	if !alive(Self().Labels("s", "w", "")) {
		t.Error("self not alive")
	}
	l := Self().Labels("s", "w", "")
	l[LabelOwnerStart] = "1"
	if alive(l) {
		t.Error("reused pid (other start time) counted alive")
	}
}

func TestSpecParsing(t *testing.T) {
	home, _ := os.UserHomeDir()
	spec := RunSpec{Workspace: "/ws", Volumes: []string{"./data:/data:ro", "/abs:/abs", "named:/n", "~/x:/x", "..:/up"}}
	b, err := spec.binds()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/ws/data:/data:ro", "/abs:/abs", "named:/n", home + "/x:/x", "/:/up"}
	if strings.Join(b, " ") != strings.Join(want, " ") {
		t.Errorf("binds %q, want %q", b, want)
	}
	if _, err := (&RunSpec{Volumes: []string{"/only"}}).binds(); err == nil || errcat.Of(err) != errcat.Config {
		t.Errorf("volume without target: %v (%s), want a config error", err, errcat.Of(err))
	}
	spec = RunSpec{Ports: []string{"8080:8080", "127.0.0.1:9000:90/udp"}, DebugPort: 5005}
	exposed, bind, err := spec.portMap()
	if err != nil {
		t.Fatal(err)
	}
	if len(exposed) != 3 || bind["8080/tcp"][0].HostPort != "8080" || bind["90/udp"][0].HostIP != "127.0.0.1" ||
		bind["5005/tcp"][0].HostIP != "127.0.0.1" || bind["5005/tcp"][0].HostPort != "" {
		t.Errorf("exposed %v bindings %v", exposed, bind)
	}
	if _, _, err := (&RunSpec{Ports: []string{"x:y:z:w"}}).portMap(); err == nil || errcat.Of(err) != errcat.Config {
		t.Errorf("bad port: %v (%s), want a config error", err, errcat.Of(err))
	}
	if err := (&RunSpec{Session: "a b", Image: "i", SidecarImage: "s"}).validate(); err == nil {
		t.Error("bad session id accepted")
	}
}

// TestReachHost checks what the sidecar relies on: host.docker.internal
// resolves to GatewayIP in the shared namespace, and a listener on the
// gateway (where the backend's SOCKS listener will be) is reachable.
func TestReachHost(t *testing.T) {
	d := needDocker(t)
	gw, err := d.GatewayIP(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello from the host\n"))
			c.Close()
		}
	}()
	session := sessionID(t)
	cleanupSession(t, d, session)
	spec := baseSpec(t, session)
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	spec.Args = []string{"app", "-dial", "host.docker.internal:" + port, "-exit", "0"}
	var out output
	s, err := d.Start(context.Background(), spec, out.add)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	if code, err := s.Wait(context.Background()); code != 0 || err != nil {
		t.Fatalf("Wait = %d, %v", code, err)
	}
	if want := "resolved [" + gw + "]"; !strings.Contains(out.get("stdout"), want) {
		t.Errorf("stdout %q lacks %q", out.get("stdout"), want)
	}
	if want := `got "hello from the host\n"`; !strings.Contains(out.get("stdout"), want) {
		t.Errorf("stdout %q lacks %q", out.get("stdout"), want)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// jdkImage returns the JDK test image (scripts/jdk-image.sh), building it
// under CI=true when it is missing and skipping otherwise.
func jdkImage(t *testing.T, d *Docker) string {
	ref := os.Getenv("TETHER_JDK_IMAGE")
	if ref == "" {
		ref = "tether-test/jdk17:latest"
	}
	if _, ok, err := d.imageExists(context.Background(), ref); err != nil {
		t.Fatal(err)
	} else if ok {
		return ref
	}
	if os.Getenv("CI") != "true" {
		t.Skipf("JDK image %s missing: run scripts/jdk-image.sh %s", ref, ref)
	}
	cmd := exec.Command("../../scripts/jdk-image.sh", ref)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/jdk-image.sh: %v\n%s", err, out)
	}
	return ref
}

// TestJavaDebugPort runs a Java app with JDWP from JAVA_TOOL_OPTIONS and
// checks that a JDWP handshake works through DebugAddress.
func TestJavaDebugPort(t *testing.T) {
	d := needDocker(t)
	img := jdkImage(t, d)
	javac, err := exec.LookPath("javac")
	if err != nil {
		t.Skip("javac not installed")
	}
	classes := t.TempDir()
	if out, err := exec.Command(javac, "--release", "17", "-d", classes, "testdata/java/Hello.java").CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	session := sessionID(t)
	cleanupSession(t, d, session)
	spec := baseSpec(t, session)
	spec.Image = img
	spec.Command = []string{"java", "-cp", "/app", "Hello"}
	spec.Args = nil
	spec.Volumes = []string{classes + ":/app:ro"}
	spec.Env = map[string]string{"JAVA_TOOL_OPTIONS": "-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=*:5005"}
	spec.DebugPort = 5005
	var out output
	start := time.Now()
	s, err := d.Start(context.Background(), spec, out.add)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	out.waitFor(t, "stdout", "Listening for transport dt_socket at address: 5005")
	t.Logf("debug port ready %s after Start began", time.Since(start))
	out.waitFor(t, "stdout", "java-app started")
	out.waitFor(t, "stderr", "java-app stderr")
	c, err := net.DialTimeout("tcp", s.DebugAddress(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte("JDWP-Handshake")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 14)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "JDWP-Handshake" {
		t.Fatalf("JDWP handshake through %s: %q, %v", s.DebugAddress(), buf, err)
	}
	c.Close()
	start = time.Now()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("Stop took %s", time.Since(start))
	assertNoContainers(t, d, session)
}

// removeStaleTestImages drops test images built from older test binaries.
func removeStaleTestImages(ctx context.Context, d *Docker, keep string) {
	c, ok := d.api.(*client.Client)
	if !ok {
		return
	}
	imgs, err := c.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", "tether-test/docker-plugin"))})
	if err != nil {
		return
	}
	for _, img := range imgs {
		for _, tag := range img.RepoTags {
			if tag != keep {
				c.ImageRemove(ctx, tag, image.RemoveOptions{PruneChildren: true})
			}
		}
	}
}

func TestStartErrorMessages(t *testing.T) {
	d := NewWithAPI(nil, "unix:///var/run/docker.sock")
	for in, want := range map[string]string{
		"Error response from daemon: driver failed programming external connectivity on endpoint x (y): Bind for 0.0.0.0:8080 failed: port is already allocated": "cannot publish port 0.0.0.0:8080: it is already in use",
		"Error starting userland proxy: listen tcp4 127.0.0.1:9000: bind: address already in use":                                                                "cannot publish port 127.0.0.1:9000: it is already in use",
		"Error starting userland proxy: listen tcp6 [::]:8080: bind: address already in use":                                                                     "cannot publish port [::]:8080: it is already in use",
	} {
		err := d.startError("sidecar", errors.New(in))
		if !errors.Is(err, ErrPortTaken) || !strings.HasPrefix(err.Error(), want) || errcat.Of(err) != errcat.Environment {
			t.Errorf("%q -> %v (%s)", in, err, errcat.Of(err))
		}
	}
	err := d.daemonError(errors.New("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"))
	if !errors.Is(err, ErrDaemonNotRunning) || !strings.HasPrefix(err.Error(), "Docker daemon not running at unix:///var/run/docker.sock: start it") {
		t.Errorf("daemon down: %v", err)
	}
	if err := d.daemonError(errors.New("OCI runtime create failed: stat /app: no such file or directory")); errors.Is(err, ErrDaemonNotRunning) || errcat.Of(err) != errcat.Environment {
		t.Errorf("container error taken for daemon down, or not an environment error: %v", err)
	}
	missing := &Error{Kind: ErrImageNotFound, Msg: "image x not found locally"}
	if errcat.Of(missing) != errcat.Environment || !errors.Is(missing, ErrImageNotFound) {
		t.Errorf("image missing: %s", errcat.Of(missing))
	}
}

// TestNameConflict: a leftover of a crashed owner holding the session's
// container name is replaced; one of a live owner is reported.
func TestNameConflict(t *testing.T) {
	d := needDocker(t)
	ctx := context.Background()
	session := sessionID(t)
	cleanupSession(t, d, session)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	self := Self()
	leftover := Owner{PID: dead.Process.Pid, UID: self.UID, Host: self.Host}
	if _, err := d.api.ContainerCreate(ctx, &container.Config{Image: testImage, Labels: leftover.Labels(session, "/ws", "sidecar")},
		nil, nil, nil, "tether-"+session+"-sidecar"); err != nil {
		t.Fatal(err)
	}
	s, err := d.Start(ctx, baseSpec(t, session), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Now the name is held by a live session: a second Start must say so.
	_, err = d.Start(ctx, baseSpec(t, session), nil)
	if err == nil || !strings.Contains(err.Error(), "already exists and belongs to a running session") {
		t.Errorf("second Start: %v", err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoContainers(t, d, session)
}
