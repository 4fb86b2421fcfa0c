package e2e

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/plugins/kubernetes"
)

// TestKubernetesNothingLeftAfterKill: `tether connect` to a kubernetes proxy
// is killed with SIGKILL and tether is not run again. With the production
// settings (60 s agent idle exit) nothing of ours — no Job, no pod — is left
// in the cluster within 90 s: the agent exits, and the Job's
// ttlSecondsAfterFinished: 0 lets the cluster delete it with its pod.
func TestKubernetesNothingLeftAfterKill(t *testing.T) {
	e := setupK8s(t)
	ws := e.workspace(t, k8sNS, "", "")
	p := startTether(t, "connect", "--workspace", ws, "cluster")
	cmd := p.cmd
	up := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(p.stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "is up") {
				up <- true
			}
		}
		up <- false
	}()
	select {
	case ok := <-up:
		if !ok {
			t.Fatal("tether connect ended before the tunnel was up")
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("tether connect: no tunnel after 3 minutes")
	}
	sel := metav1.ListOptions{LabelSelector: fmt.Sprintf("%s=tether,%s=%d", kubernetes.LabelManagedBy, kubernetes.LabelOwnerPID, cmd.Process.Pid)}
	ours := func() (jobs, pods []string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if l, err := e.cs.BatchV1().Jobs(k8sNS).List(ctx, sel); err == nil {
			for _, j := range l.Items {
				jobs = append(jobs, j.Name)
			}
		} else {
			t.Logf("list jobs: %v", err)
			jobs = append(jobs, "?")
		}
		if l, err := e.cs.CoreV1().Pods(k8sNS).List(ctx, sel); err == nil {
			for _, p := range l.Items {
				pods = append(pods, p.Name+"("+string(p.Status.Phase)+")")
				checkHygiene(t, &p)
			}
		} else {
			t.Logf("list pods: %v", err)
			pods = append(pods, "?")
		}
		return jobs, pods
	}
	jobs, pods := ours()
	if len(jobs) != 1 || len(pods) != 1 {
		t.Fatalf("want one agent job and pod of ours, have jobs %v pods %v", jobs, pods)
	}
	t.Logf("tether connect %d: job %v pod %v", cmd.Process.Pid, jobs, pods)
	_ = cmd.Process.Kill()
	killed := time.Now()
	last := ""
	for {
		jobs, pods := ours()
		if len(jobs) == 0 && len(pods) == 0 {
			break
		}
		if s := fmt.Sprint(jobs, pods); s != last {
			last = s
			t.Logf("%v after the kill: jobs %v pods %v", time.Since(killed).Round(time.Second), jobs, pods)
		}
		if time.Since(killed) > 90*time.Second {
			t.Fatalf("90 s after SIGKILL, still in the cluster: jobs %v pods %v", jobs, pods)
		}
		time.Sleep(time.Second)
	}
	t.Logf("nothing of ours left %v after SIGKILL (agent idle exit %v)", time.Since(killed).Round(time.Second), kubernetes.DefaultIdleExit)
}
