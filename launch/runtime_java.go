package launch

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/javaagent"
	"github.com/tether-dev/tether/workspace"
)

// java configurations: a local JVM whose sockets go through the channel,
// by Tether's Java agent (when this build embeds it and the configuration
// does not turn it off) or the JDK's SOCKS properties; with debug, JDWP on
// loopback.

func init() { registerRuntime(javaRuntime{}) }

type javaRuntime struct{}

func (javaRuntime) Type() string { return workspace.TypeJava }

func (r javaRuntime) Start(ctx context.Context, s *starting) (App, error) {
	inj, err := s.prepare(ctx, r)
	if err != nil {
		return nil, err
	}
	argv, err := javaArgv(s.m.Workspace.Dir, s.rc, inj)
	if err != nil {
		return nil, err
	}
	return startProcess(ctx, s, processSpec(s.m.Workspace.Dir, s.rc, argv, inj), inj.DebugAddress)
}

// Prepare starts the session's Java agent (when used) and returns the JVM
// args that route the app through it or the channel, the lane's and the
// exposed ports' system properties and, with debug, the JDWP agent.
func (javaRuntime) Prepare(ctx context.Context, rc *workspace.RunConfig, ic *Interconnect, debug bool) (Injected, error) {
	var inj Injected
	if ic != nil {
		if useJavaAgent(rc) && ic.agent == nil {
			if err := ic.StartJavaAgent(ctx); err != nil {
				return inj, err
			}
		}
		if ic.agent != nil {
			inj.VMArgs = append(inj.VMArgs, ic.agent.JVMArgs()...)
			inj.Env = ic.agent.Env()
		} else {
			inj.VMArgs = append(inj.VMArgs, ic.JVMArgs()...)
		}
		props, _ := ic.settings()
		inj.VMArgs = append(inj.VMArgs, props...)
	}
	if !debug {
		return inj, nil
	}
	port := 0
	suspend := "n"
	if d := rc.Debug; d != nil {
		port = d.Port
		if d.Suspend {
			suspend = "y"
		}
	}
	if port == 0 {
		p, err := freePort()
		if err != nil {
			return inj, err
		}
		port = p
	}
	inj.DebugAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	inj.VMArgs = append(inj.VMArgs, fmt.Sprintf("-agentlib:jdwp=transport=dt_socket,server=y,suspend=%s,address=%s", suspend, inj.DebugAddress))
	return inj, nil
}

// javaArgv is the java command line: Tether's JVM args, the
// configuration's, the classpath, the jar or main class, the app's args.
func javaArgv(dir string, rc *workspace.RunConfig, inj Injected) ([]string, error) {
	j := rc.Java
	if j == nil {
		return nil, errcat.Config.Newf("run configuration %s has no java section", rc.Name)
	}
	javaBin, err := findJava(dir, j.JavaHome)
	if err != nil {
		return nil, err
	}
	argv := []string{javaBin}
	argv = append(argv, inj.VMArgs...)
	argv = append(argv, j.VMArgs...)
	if len(j.Classpath) > 0 {
		cp := make([]string, len(j.Classpath))
		for i, e := range j.Classpath {
			cp[i] = resolvePath(dir, e)
		}
		argv = append(argv, "-cp", strings.Join(cp, string(os.PathListSeparator)))
	}
	if j.Jar != "" {
		argv = append(argv, "-jar", resolvePath(dir, j.Jar))
	} else {
		argv = append(argv, j.MainClass)
	}
	return append(argv, j.Args...), nil
}

// findJava finds the java launcher: the config's javaHome, JAVA_HOME, PATH.
func findJava(dir, javaHome string) (string, error) {
	for _, home := range []string{resolvePath(dir, javaHome), os.Getenv("JAVA_HOME")} {
		if home == "" {
			continue
		}
		bin := filepath.Join(home, "bin", "java")
		if st, err := os.Stat(bin); err == nil && !st.IsDir() {
			return bin, nil
		}
		if home == javaHome {
			return "", errcat.Config.Newf("java.javaHome %s has no bin/java", home)
		}
	}
	bin, err := exec.LookPath("java")
	if err != nil {
		return "", errcat.Environment.New("no java found: set java.javaHome in the run configuration, or JAVA_HOME, or put java on PATH")
	}
	return bin, nil
}

// useJavaAgent: java configurations use Tether's Java agent unless they
// turn it off, when this build embeds it.
func useJavaAgent(rc *workspace.RunConfig) bool {
	if !javaagent.Available() {
		return false
	}
	return rc.Java == nil || rc.Java.Agent == nil || *rc.Java.Agent
}
