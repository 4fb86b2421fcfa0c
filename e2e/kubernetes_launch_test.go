package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// getsJava fetches every URL given with HttpURLConnection and prints the
// first line of each body.
const getsJava = `
import java.io.*;
import java.net.*;

public class Gets {
    public static void main(String[] args) throws Exception {
        for (String u : args) {
            HttpURLConnection c = (HttpURLConnection) new URL(u).openConnection();
            c.setConnectTimeout(10000);
            c.setReadTimeout(10000);
            try (BufferedReader r = new BufferedReader(new InputStreamReader(c.getInputStream()))) {
                System.out.println(u + " -> " + r.readLine());
            }
        }
    }
}
`

// TestKubernetesLaunch: `tether launch` of a Java app with a kubernetes
// proxy reaches a Service by cluster DNS name and by ClusterIP, and a pod by
// IP; the agent pod exists only while the app runs.
func TestKubernetesLaunch(t *testing.T) {
	requireJava(t)
	e := setupK8s(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "Gets.java")
	if err := os.WriteFile(src, []byte(getsJava), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("javac", "-d", dir, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	urls := []string{"http://orders.dev.svc.cluster.local/", "http://orders.dev/", "http://" + e.clusterIP + "/", "http://" + e.podIP + ":8080/"}
	ws := e.workspace(t, k8sNS, "", fmt.Sprintf(`configurations:
  - name: gets
    type: java
    java: {mainClass: Gets, classpath: [%s], args: ["%s"]}
    interconnect: {enabled: true, proxy: cluster}
`, dir, strings.Join(urls, `", "`)))
	out, err := tetherCmd(ctxT(t), "launch", "--workspace", ws, "gets").CombinedOutput()
	if err != nil {
		t.Fatalf("tether launch through the cluster: %v\n%s", err, out)
	}
	for _, u := range urls {
		if !strings.Contains(string(out), u+" -> orders") {
			t.Errorf("no answer from %s:\n%s", u, out)
		}
	}
}
