// holdtunnel opens a Kubernetes tunnel, prints "POD <namespace>/<name>" and
// holds it until killed: the process the crash-safety test SIGKILLs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/tether-dev/tether/plugins/kubernetes"
)

func main() {
	kc := flag.String("kubeconfig", "", "kubeconfig")
	ns := flag.String("namespace", "default", "namespace")
	idle := flag.Duration("idle-exit", 0, "agent idle exit")
	session := flag.String("session", "", "session")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t, err := kubernetes.Open(ctx, kubernetes.Config{Kubeconfig: *kc, Namespace: *ns, IdleExit: *idle, Session: *session})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	n, p := t.Pod()
	fmt.Printf("POD %s/%s\n", n, p)
	select {}
}
