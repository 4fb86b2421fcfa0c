package kubernetes

import (
	"context"
	"errors"
	"os"
	"strconv"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/internal/errcat"
)

// Clean deletes the agents (Jobs and pods) of this owner (same user and
// host, by label) in the configured namespace that are finished
// (Succeeded/Failed) or orphaned (their owner process on this host is gone).
// With all, every agent of this owner goes, running sessions included.
// Agents of other users or hosts are never touched. It returns what it
// deleted as "namespace/name" (jobs as "namespace/job/name").
func Clean(ctx context.Context, cfg Config, all bool) ([]string, error) {
	cfg.defaults()
	c, err := connect(cfg)
	if err != nil {
		return nil, err
	}
	o := *cfg.Owner
	var gone []string
	var errs []error
	// Jobs first: their pods go with them. Without permission to list Jobs
	// there are none of ours (the agent is then a bare pod).
	jobs, err := c.client.BatchV1().Jobs(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: o.selector()})
	if err == nil {
		for _, j := range jobs.Items {
			if !all && !ownedAndOver(j.Labels, j.Annotations, jobFinished(&j), o) {
				continue
			}
			if err := c.deleteAgent(ctx, agentRef{job: j.Name}); err != nil {
				errs = append(errs, errcat.Environment.Newf("deleting job %s/%s: %w", j.Namespace, j.Name, err))
				continue
			}
			gone = append(gone, j.Namespace+"/job/"+j.Name)
		}
	}
	list, err := c.client.CoreV1().Pods(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: o.selector()})
	if err != nil {
		return gone, explain(err)
	}
	for _, p := range list.Items {
		if !all && !finishedOrOrphaned(&p, o) {
			continue
		}
		if err := c.deletePod(ctx, p.Name); err != nil {
			errs = append(errs, errcat.Environment.Newf("deleting %s/%s: %w", p.Namespace, p.Name, err))
			continue
		}
		gone = append(gone, p.Namespace+"/"+p.Name)
	}
	return gone, errors.Join(errs...)
}

func finishedOrOrphaned(p *corev1.Pod, o Owner) bool {
	return ownedAndOver(p.Labels, p.Annotations, p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, o)
}

// ownedAndOver: an agent (pod or Job) of owner o that is finished or whose
// owner process is gone.
func ownedAndOver(labels, annotations map[string]string, finished bool, o Owner) bool {
	// The selector matched; re-check the owner anyway (belt and braces).
	if labels[LabelManagedBy] != "tether" || labels[LabelOwnerUser] != labelValue(o.User) || labels[LabelOwnerHost] != labelValue(o.Host) {
		return false
	}
	if finished {
		return true
	}
	pid, err := strconv.Atoi(labels[LabelOwnerPID])
	if err != nil || pid <= 0 {
		return false // unknown owner process: leave it to its idle exit
	}
	if pid == o.PID && annotations[AnnotationOwnerStart] == o.Start {
		return false // ours, alive
	}
	if !alive(pid) {
		return true // the owner process is gone
	}
	start := annotations[AnnotationOwnerStart]
	return start != "" && procStart(pid) != start // the PID was reused
}

// alive reports whether process pid exists on this host.
func alive(pid int) bool {
	if _, err := os.Stat("/proc/self"); err == nil {
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		return err == nil
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EPERM)
}
