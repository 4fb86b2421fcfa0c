package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Clean deletes agent pods of this owner (same user and host, by label) in
// the configured namespace that are finished (Succeeded/Failed) or orphaned
// (their owner process on this host is gone). With all, every agent pod of
// this owner goes, running sessions included. Pods of other users or hosts
// are never touched. It returns the deleted pods as "namespace/name".
func Clean(ctx context.Context, cfg Config, all bool) ([]string, error) {
	cfg.defaults()
	c, err := connect(cfg)
	if err != nil {
		return nil, err
	}
	o := *cfg.Owner
	list, err := c.client.CoreV1().Pods(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: o.selector()})
	if err != nil {
		return nil, explain(err)
	}
	var gone []string
	var errs []error
	for _, p := range list.Items {
		if !all && !finishedOrOrphaned(&p, o) {
			continue
		}
		if err := c.deletePod(ctx, p.Name); err != nil {
			errs = append(errs, fmt.Errorf("deleting %s/%s: %w", p.Namespace, p.Name, err))
			continue
		}
		gone = append(gone, p.Namespace+"/"+p.Name)
	}
	return gone, errors.Join(errs...)
}

func finishedOrOrphaned(p *corev1.Pod, o Owner) bool {
	// The selector matched; re-check the owner anyway (belt and braces).
	if p.Labels[LabelManagedBy] != "tether" || p.Labels[LabelOwnerUser] != labelValue(o.User) || p.Labels[LabelOwnerHost] != labelValue(o.Host) {
		return false
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return true
	}
	pid, err := strconv.Atoi(p.Labels[LabelOwnerPID])
	if err != nil || pid <= 0 {
		return false // unknown owner process: leave it to its idle exit
	}
	if pid == o.PID && p.Annotations[AnnotationOwnerStart] == o.Start {
		return false // ours, alive
	}
	if !alive(pid) {
		return true // the owner process is gone
	}
	start := p.Annotations[AnnotationOwnerStart]
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
