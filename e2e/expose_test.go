package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/syncbuf"
)

// serverJava answers HTTP on every port given and prints the registry
// properties it was started with.
const serverJava = `
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;

public class Server {
    public static void main(String[] args) throws Exception {
        for (String k : new String[]{"spring.cloud.nacos.discovery.ip", "spring.cloud.nacos.discovery.port",
                "eureka.instance.ip-address", "eureka.instance.non-secure-port", "eureka.instance.prefer-ip-address",
                "spring.cloud.consul.discovery.ip-address", "spring.cloud.consul.discovery.port",
                "DUBBO_IP_TO_REGISTRY", "DUBBO_PORT_TO_REGISTRY"}) {
            System.out.println("PROP " + k + "=" + System.getProperty(k));
        }
        for (String a : args) {
            int port = Integer.parseInt(a);
            HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
            s.createContext("/", ex -> {
                byte[] b = ("hello from the laptop on " + port).getBytes();
                ex.sendResponseHeaders(200, b.length);
                ex.getResponseBody().write(b);
                ex.close();
            });
            s.start();
        }
        System.out.println("READY");
    }
}
`

// TestExposeToTheCloud: a local Java HTTP server with exposed ports is
// called from inside the vpc at the advertised addresses; the registry
// properties carry those addresses; after stop the ports are closed.
func TestExposeToTheCloud(t *testing.T) {
	w := startCloudWS(t, true)
	dir := t.TempDir()
	src := filepath.Join(dir, "Server.java")
	if err := os.WriteFile(src, []byte(serverJava), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("javac", "-d", dir, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	var ports []string
	var expose []string
	for i, reg := range []string{"nacos", "eureka", "consul", "dubbo"} {
		p, err := freeLocalPort()
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, fmt.Sprint(p))
		remote := 0
		if i == 0 {
			remote = 38000 + os.Getpid()%1000 // a fixed remote port, as users often ask for
		}
		expose = append(expose, fmt.Sprintf("{localPort: %d, remotePort: %d, registry: %s}", p, remote, reg))
	}
	cfg := fmt.Sprintf(`
  - name: server
    type: java
    java: {mainClass: Server, classpath: [%s], args: [%s]}
    interconnect:
      enabled: true
      proxy: bastion
      expose: [%s]
`, dir, strings.Join(ports, ", "), strings.Join(expose, ", "))
	f, _ := os.OpenFile(filepath.Join(w.dir, "tether.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	_, _ = f.WriteString(cfg)
	f.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := tetherCmd(ctx, "launch", "--workspace", w.dir, "server", "--log-calls")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	addrs := map[string]string{} // local port -> advertised address
	var errLog syncbuf.Buffer
	go func() {
		sc := bufio.NewScanner(io.TeeReader(stderr, &errLog))
		for sc.Scan() {
			var local, addr string
			if n, _ := fmt.Sscanf(sc.Text(), "tether: cloud callers reach local port %s at %s", &local, &addr); n == 2 {
				errLog.Write([]byte("ADDR " + local + " " + addr + "\n"))
			}
		}
	}()
	props := map[string]string{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "READY" {
		if kv, ok := strings.CutPrefix(sc.Text(), "PROP "); ok {
			k, v, _ := strings.Cut(kv, "=")
			props[k] = v
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(addrs) < 4 && time.Now().Before(deadline) {
		for _, line := range strings.Split(errLog.String(), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "ADDR" {
				addrs[f[1]] = f[2]
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(addrs) != 4 {
		t.Fatalf("advertised addresses: %v\n%s", addrs, errLog.String())
	}
	for _, p := range ports {
		host, _, _ := net.SplitHostPort(addrs[p])
		if host != w.cloud.BastionVPCIP {
			t.Fatalf("advertised %s, want the bastion's vpc address %s", addrs[p], w.cloud.BastionVPCIP)
		}
		body := getFromVPC(t, w, addrs[p])
		if !strings.Contains(body, "hello from the laptop on "+p) {
			t.Fatalf("from the vpc via %s: %q", addrs[p], body)
		}
	}
	// The calls from the cloud are read on the expose path.
	for start := time.Now(); !strings.Contains(errLog.String(), "tether: from the cloud: GET http://x/ -> 200 "); {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no inbound call logged:\n%s", errLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	check := func(k, want string) {
		if props[k] != want {
			t.Errorf("%s = %q, want %q", k, props[k], want)
		}
	}
	split := func(a string) (string, string) { h, p, _ := net.SplitHostPort(a); return h, p }
	h, p := split(addrs[ports[0]])
	check("spring.cloud.nacos.discovery.ip", h)
	check("spring.cloud.nacos.discovery.port", p)
	if p != fmt.Sprint(38000+os.Getpid()%1000) {
		t.Errorf("fixed remote port not honoured: %s", p)
	}
	h, p = split(addrs[ports[1]])
	check("eureka.instance.ip-address", h)
	check("eureka.instance.non-secure-port", p)
	check("eureka.instance.prefer-ip-address", "true")
	h, p = split(addrs[ports[2]])
	check("spring.cloud.consul.discovery.ip-address", h)
	check("spring.cloud.consul.discovery.port", p)
	h, p = split(addrs[ports[3]])
	check("DUBBO_IP_TO_REGISTRY", h)
	check("DUBBO_PORT_TO_REGISTRY", p)

	// sshd restarts: the forwards come back on the same addresses.
	w.cloud.StopSSHD()
	if err := w.cloud.StartSSHD(); err != nil {
		t.Fatal(err)
	}
	a := addrs[ports[0]]
	for start := time.Now(); ; {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		c, err := w.cloud.DialFromVPC(dctx, a)
		dcancel()
		if err == nil {
			c.Close()
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("%s not back after the reconnect: %v\n%s", a, err, errLog.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if body := getFromVPC(t, w, a); !strings.Contains(body, "hello from the laptop") {
		t.Fatalf("after reconnect: %q", body)
	}

	cancel() // Ctrl-C: the app stops, the forwards go
	_ = cmd.Wait()
	for _, a := range addrs {
		dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := w.cloud.DialFromVPC(dctx, a)
		dcancel()
		if err == nil {
			c.Close()
			t.Fatalf("%s still open on the bastion after stop", a)
		}
	}
}

func getFromVPC(t *testing.T, w *cloudWS, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := w.cloud.DialFromVPC(ctx, addr)
	if err != nil {
		t.Fatalf("dial %s from the vpc: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(c)
	return string(b)
}

func freeLocalPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// TestExposePortTaken: a remote port that is taken fails the launch with a
// clear error before the app starts.
func TestExposePortTaken(t *testing.T) {
	w := startCloudWS(t, true)
	cfg := `
  - name: taken
    type: exec
    exec: {command: [sh, -c, "echo APP RAN"]}
    interconnect: {enabled: true, proxy: bastion, expose: [{localPort: 8080, remotePort: 39999}]}
`
	f, _ := os.OpenFile(filepath.Join(w.dir, "tether.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	_, _ = f.WriteString(cfg)
	f.Close()
	ln, err := w.cloud.ListenInBastion(net.JoinHostPort(w.cloud.BastionVPCIP, "39999"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, err := tetherCmd(ctxT(t), "launch", "--workspace", w.dir, "taken").CombinedOutput()
	if err == nil || strings.Contains(string(out), "APP RAN") || !strings.Contains(string(out), "refused to listen") {
		t.Fatalf("launch with a taken port: %v\n%s", err, out)
	}
}
