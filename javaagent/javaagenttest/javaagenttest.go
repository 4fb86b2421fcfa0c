// Package javaagenttest builds the Java agent and its test programs for
// tests (javac and jar only), and finds the JDKs installed on the machine.
package javaagenttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Root is the module root (found from this file's location).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

var (
	buildMu  sync.Mutex
	built    Built
	buildErr error
)

// Built is a fresh agent jar and the compiled test programs.
type Built struct {
	Jar     string // the agent jar, built from javaagent/java by scripts/javaagent.sh
	Classes string // AgentProbe and PatchJDK (need Jar on the class path for PatchJDK)
	Dir     string
}

// Build builds the agent jar and the test programs into a temporary
// directory (removed by Cleanup), once until the next Cleanup.
func Build() (Built, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if built.Dir != "" || buildErr != nil {
		return built, buildErr
	}
	func() {
		dir, err := os.MkdirTemp("", "tether-javaagent-test-")
		if err != nil {
			buildErr = err
			return
		}
		built = Built{Jar: filepath.Join(dir, "tether-javaagent.jar"), Classes: filepath.Join(dir, "classes"), Dir: dir}
		if out, err := exec.Command(filepath.Join(Root(), "scripts", "javaagent.sh"), built.Jar).CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("scripts/javaagent.sh: %v\n%s", err, out)
			return
		}
		src := filepath.Join(Root(), "javaagent", "java", "test")
		args := []string{"--release", "11", "-nowarn", "-cp", built.Jar, "-d", built.Classes,
			filepath.Join(src, "AgentProbe.java"), filepath.Join(src, "PatchJDK.java"), filepath.Join(src, "PatchSelfTest.java"),
			filepath.Join(src, "AgentBench.java"), filepath.Join(src, "io", "netty", "channel", "epoll", "Epoll.java")}
		if out, err := exec.Command("javac", args...).CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("javac test programs: %v\n%s", err, out)
		}
	}()
	return built, buildErr
}

// Cleanup removes what Build made.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if built.Dir != "" {
		os.RemoveAll(built.Dir)
	}
	built, buildErr = Built{}, nil
}

// JDK is one installed JDK.
type JDK struct {
	Home    string
	Feature int // 17, 25, ...
}

// Java is the path of its java launcher.
func (j JDK) Java() string { return filepath.Join(j.Home, "bin", "java") }

var versionRE = regexp.MustCompile(`version "(1\.)?(\d+)`)

// JDKs lists the JDKs (11 and newer) under /usr/lib/jvm, one per feature
// release, oldest first.
func JDKs() []JDK {
	homes, _ := filepath.Glob("/usr/lib/jvm/*")
	seen := map[int]bool{}
	var out []JDK
	for _, h := range homes {
		if fi, err := os.Lstat(h); err != nil || fi.Mode()&os.ModeSymlink != 0 {
			continue
		}
		java := filepath.Join(h, "bin", "java")
		if _, err := os.Stat(java); err != nil {
			continue
		}
		b, err := exec.Command(java, "-version").CombinedOutput()
		if err != nil {
			continue
		}
		m := versionRE.FindStringSubmatch(string(b))
		if m == nil {
			continue
		}
		f, _ := strconv.Atoi(m[2])
		if f < 11 || seen[f] {
			continue
		}
		seen[f] = true
		out = append(out, JDK{Home: h, Feature: f})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Feature < out[j].Feature })
	return out
}

// VerifyFlags make the JVM verify every class, the JDK's own (patched) ones
// included.
var VerifyFlags = []string{"-XX:+UnlockDiagnosticVMOptions", "-XX:+BytecodeVerificationLocal", "-XX:+BytecodeVerificationRemote"}

// Results parses AgentProbe output: case name -> "OK ..." / "FAIL ..." line.
func Results(out string) map[string]string {
	res := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "OK" || f[0] == "FAIL" || f[0] == "SKIP") {
			res[f[1]] = l
		}
	}
	return res
}
