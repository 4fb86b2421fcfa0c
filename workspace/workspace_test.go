package workspace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const sample = `# Tether workspace for the orders team
version: 1
proxies:
  # the bastion in the dev VPC
  - name: dev-bastion
    ssh: {host: 10.200.0.2, port: 22, user: dev}
    routes:
      cidrs: [10.10.0.0/16] # the VPC
      domains: [vpc.internal]
configurations:
  - name: orders
    type: java
    java:
      mainClass: com.example.Main # entry point
      classpath: [build/classes]
    interconnect: {enabled: true, proxy: dev-bastion}
`

func writeSample(t *testing.T, content string) *Workspace {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return &Workspace{Dir: dir}
}

func TestLoadSample(t *testing.T) {
	w := writeSample(t, sample)
	s, err := w.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Problems) > 0 {
		t.Fatalf("problems: %v", s.Problems)
	}
	rc, ok := s.File.Config("orders")
	if !ok || rc.Java.MainClass != "com.example.Main" || !rc.Interconnect.Enabled {
		t.Fatalf("config = %+v", rc)
	}
}

func TestProblemsNameFieldPaths(t *testing.T) {
	bad := `version: 1
proxies:
  - name: p
    ssh: {host: h, port: 70000}
    routes: {cidrs: [10.0.0.0/33]}
  - name: k
    kubernetes: {portForward: http2}
configurations:
  - name: a
    type: java
    java: {classpath: [x]}
  - name: b
    type: exec
    exec: {command: [x]}
    interconnect: {enabled: true, proxy: x}
  - name: c
    type: java
    java: {mainclass: Foo}
    bogus: 1
`
	w := writeSample(t, bad)
	s, err := w.Load()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range s.Problems {
		got[p.Path] = p.Message
		if p.Line == 0 {
			t.Errorf("%s: no line", p.Path)
		}
	}
	want := map[string]string{
		"proxies[0].ssh.port":                  "must be between 0 and 65535",
		"proxies[0].routes.cidrs[0]":           "is not a CIDR",
		"proxies[1].kubernetes.portForward":    `must be one of spdy, websocket, not "http2"`,
		"configurations[0].java.mainClass":     "required (or java.jar)",
		"configurations[1].interconnect.proxy": `no proxy named "x"`,
		"configurations[2].java.mainclass":     `did you mean "mainClass"`,
		"configurations[2].bogus":              "unknown field",
	}
	for path, msg := range want {
		if !strings.Contains(got[path], msg) {
			t.Errorf("%s: got %q, want it to contain %q (all: %v)", path, got[path], msg, s.Problems)
		}
	}
}

func TestSaveKeepsComments(t *testing.T) {
	w := writeSample(t, sample)
	s, _ := w.Load()
	rc, _ := s.File.Config("orders")
	c := *rc
	c.Java = &JavaConfig{MainClass: "com.example.Other", Classpath: []string{"build/classes", "lib/*"}}
	c.Env = map[string]string{"SPRING_PROFILES_ACTIVE": "dev"}
	if _, err := w.SaveConfig(s.Revision, c); err != nil {
		t.Fatal(err)
	}
	worker := RunConfig{Name: "worker", Type: TypeExec, Exec: &ExecConfig{Command: []string{"./bin/worker"}}}
	if _, err := w.SaveConfig("", worker); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(w.Path())
	for _, want := range []string{"# Tether workspace for the orders team", "# the bastion in the dev VPC", "# the VPC", "# entry point", "com.example.Other", "SPRING_PROFILES_ACTIVE: dev", "name: worker"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("saved file lacks %q:\n%s", want, data)
		}
	}
	s2, err := w.Load()
	if err != nil || len(s2.Problems) > 0 {
		t.Fatalf("reload: %v %v\n%s", err, s2.Problems, data)
	}
}

func TestStaleRevisionConflicts(t *testing.T) {
	w := writeSample(t, sample)
	s, _ := w.Load()
	rc := RunConfig{Name: "a", Type: TypeExec, Exec: &ExecConfig{Command: []string{"true"}}}
	if _, err := w.SaveConfig(s.Revision, rc); err != nil {
		t.Fatal(err)
	}
	rc.Name = "b"
	if _, err := w.SaveConfig(s.Revision, rc); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale save: err = %v, want conflict", err)
	}
}

func TestInvalidSaveRefused(t *testing.T) {
	w := writeSample(t, sample)
	before, _ := os.ReadFile(w.Path())
	_, err := w.SaveConfig("", RunConfig{Name: "x", Type: TypeJava, Java: &JavaConfig{}})
	var ps Problems
	if !errors.As(err, &ps) || ps[0].Path != "java.mainClass" {
		t.Fatalf("err = %v", err)
	}
	after, _ := os.ReadFile(w.Path())
	if string(before) != string(after) {
		t.Fatal("file changed by a refused save")
	}
}

func TestDeleteProxyInUseRefused(t *testing.T) {
	w := writeSample(t, sample)
	if _, err := w.DeleteProxy("", "dev-bastion"); err == nil || !strings.Contains(err.Error(), "orders") {
		t.Fatalf("err = %v", err)
	}
}

func TestConcurrentWritersLoseNothing(t *testing.T) {
	w := writeSample(t, sample)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each writer is its own Workspace value, as two backends would be.
			ws := &Workspace{Dir: w.Dir}
			rc := RunConfig{Name: fmt.Sprintf("c%d", i), Type: TypeExec, Exec: &ExecConfig{Command: []string{"true"}}}
			if _, err := ws.SaveConfig("", rc); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	s, err := w.Load()
	if err != nil || len(s.Problems) > 0 {
		t.Fatal(err, s.Problems)
	}
	if n := len(s.File.Configurations); n != 21 {
		t.Fatalf("%d configurations, want 21", n)
	}
	if left, _ := filepath.Glob(filepath.Join(w.Dir, "*.tmp-*")); len(left) > 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

func TestSchemaFileInSync(t *testing.T) {
	want, err := os.ReadFile("../schema/tether.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(JSONSchema()) {
		t.Fatal("schema/tether.schema.json is stale: run `go run ./cmd/tether schema > schema/tether.schema.json`")
	}
}

func TestDecodeConfigFromJSON(t *testing.T) {
	_, ps, err := DecodeConfig([]byte(`{"name":"x","type":"java","java":{"mainClass":5},"env":{"A":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Path != "java.mainClass" || !strings.Contains(ps[0].Message, "expected a string, got an integer") {
		t.Fatalf("problems = %v", ps)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("version: 1\nconfigurations: [{name: a, type: java, java: {jar: x.jar}}]"))
	f.Add([]byte("a: &a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		_ = s.File.Validate()
	})
}
