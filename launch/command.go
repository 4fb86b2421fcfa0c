package launch

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/tether-dev/tether/workspace"
)

// Injected is what Tether adds to an app: JVM args for java, environment
// variables for any type.
type Injected struct {
	VMArgs []string
	Env    map[string]string
	// DebugAddress is where a debugger attaches (java with debug).
	DebugAddress string
}

// Inject computes what the app needs: the interconnect's proxy settings
// (ic may be nil when interconnect is off) and, with debug, the JDWP agent.
func Inject(rc *workspace.RunConfig, ic *Interconnect, debug bool) (Injected, error) {
	var inj Injected
	if ic != nil {
		switch {
		case rc.Type == workspace.TypeJava && ic.agent != nil:
			inj.VMArgs = append(inj.VMArgs, ic.agent.JVMArgs()...)
			inj.Env = ic.agent.Env()
		case rc.Type == workspace.TypeJava:
			inj.VMArgs = append(inj.VMArgs, ic.JVMArgs()...)
		default:
			inj.Env = ic.ProxyEnv()
		}
		if ic.lane != nil {
			props, env := laneArgs(ic.lane.name)
			if rc.Type == workspace.TypeJava {
				for _, k := range sortedKeys(props) {
					inj.VMArgs = append(inj.VMArgs, "-D"+k+"="+props[k])
				}
			} else {
				if inj.Env == nil {
					inj.Env = map[string]string{}
				}
				for k, v := range env {
					inj.Env[k] = v
				}
			}
		}
		for _, ex := range ic.Exposed() {
			props, env := registryArgs(ex.Registry, ex.Address)
			if rc.Type == workspace.TypeJava {
				for _, k := range sortedKeys(props) {
					inj.VMArgs = append(inj.VMArgs, "-D"+k+"="+props[k])
				}
				continue
			}
			if inj.Env == nil {
				inj.Env = map[string]string{}
			}
			for k, v := range env {
				inj.Env[k] = v
			}
		}
	}
	if debug && rc.Type == workspace.TypeJava {
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
	}
	return inj, nil
}

// Command builds the process for a java or exec configuration.
func Command(dir string, rc *workspace.RunConfig, inj Injected) (Spec, error) {
	spec := Spec{Dir: dir}
	if rc.Cwd != "" {
		spec.Dir = resolvePath(dir, rc.Cwd)
	}
	switch rc.Type {
	case workspace.TypeJava:
		j := rc.Java
		if j == nil {
			return spec, fmt.Errorf("run configuration %s has no java section", rc.Name)
		}
		javaBin, err := findJava(dir, j.JavaHome)
		if err != nil {
			return spec, err
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
		spec.Argv = append(argv, j.Args...)
	case workspace.TypeExec:
		if rc.Exec == nil || len(rc.Exec.Command) == 0 {
			return spec, fmt.Errorf("run configuration %s has no exec.command", rc.Name)
		}
		spec.Argv = append([]string(nil), rc.Exec.Command...)
		if strings.Contains(spec.Argv[0], "/") && !filepath.IsAbs(spec.Argv[0]) {
			spec.Argv[0] = filepath.Join(spec.Dir, spec.Argv[0])
		}
	default:
		return spec, fmt.Errorf("run configurations of type %s are %w", rc.Type, ErrNotSupported)
	}
	spec.Env = environ(rc.Env, inj.Env)
	return spec, nil
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
			return "", fmt.Errorf("java.javaHome %s has no bin/java", home)
		}
	}
	bin, err := exec.LookPath("java")
	if err != nil {
		return "", fmt.Errorf("no java found: set java.javaHome in the run configuration, or JAVA_HOME, or put java on PATH")
	}
	return bin, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// jdwpListening matches the JVM's line once JDWP accepts a debugger.
var jdwpListening = regexp.MustCompile(`Listening for transport dt_socket at address: *(\S+)`)

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
