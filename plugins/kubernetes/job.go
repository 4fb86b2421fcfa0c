package kubernetes

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/tether-dev/tether/internal/errcat"
)

// The agent pod is created through a Job with ttlSecondsAfterFinished: 0, so
// that the cluster removes it by itself once the agent has exited — after
// its idle exit when the backend was killed and never came back. A bare pod
// would stay Completed until the next tether run cleans it. When the user
// may not create Jobs, the agent is a bare pod as before (see
// docs/kubernetes.md).

// jobNameLabel is set by the Job controller on the Job's pods.
const jobNameLabel = "batch.kubernetes.io/job-name"

// jobSpec wraps the agent pod in a Job that runs it once (no retries: a
// failed agent is replaced by the tunnel, with fresh keys) and is deleted,
// with its pod, as soon as it has finished.
func jobSpec(pod *corev1.Pod) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: pod.GenerateName,
			Labels:       pod.Labels,
			Annotations:  pod.Annotations,
		},
		Spec: batchv1.JobSpec{
			Parallelism:             ptr.To(int32(1)),
			Completions:             ptr.To(int32(1)),
			BackoffLimit:            ptr.To(int32(0)),
			TTLSecondsAfterFinished: ptr.To(int32(0)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: pod.Labels, Annotations: pod.Annotations},
				Spec:       pod.Spec,
			},
		},
	}
}

// agentRef is one agent: its Job ("" for a bare pod) and its pod.
type agentRef struct {
	job, pod string
}

// createAgent creates the agent's Job, or a bare pod when Jobs are
// forbidden, and returns it once its pod exists.
func (c *cluster) createAgent(ctx context.Context, cfg *Config, pod *corev1.Pod) (agentRef, error) {
	j, err := c.client.BatchV1().Jobs(c.namespace).Create(ctx, jobSpec(pod), metav1.CreateOptions{})
	if apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
		cfg.Logger.Warn("may not create Jobs: the agent is a bare pod, which stays Completed after a crash until the next tether run or tether clean",
			"namespace", c.namespace, "err", err)
		p, err := c.client.CoreV1().Pods(c.namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return agentRef{}, err
		}
		return agentRef{pod: p.Name}, nil
	}
	if err != nil {
		return agentRef{}, err
	}
	ref := agentRef{job: j.Name}
	// The Job controller creates the pod within a few hundred ms.
	wctx, cancel := context.WithTimeout(ctx, min(cfg.ReadyTimeout, 60*time.Second))
	defer cancel()
	for {
		list, err := c.client.CoreV1().Pods(c.namespace).List(wctx, metav1.ListOptions{LabelSelector: jobNameLabel + "=" + j.Name})
		if err == nil && len(list.Items) > 0 {
			ref.pod = list.Items[0].Name
			return ref, nil
		}
		select {
		case <-wctx.Done():
			msg := fmt.Sprintf("kubernetes: the Job %s/%s created no agent pod", c.namespace, j.Name)
			if w := c.warnings(context.Background(), j.Name); w != "" {
				msg += ": " + w
			}
			return ref, errcat.Environment.New(msg)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// deleteAgent deletes the agent's Job (its pod goes with it) and its pod at
// once (grace period 0).
func (c *cluster) deleteAgent(ctx context.Context, a agentRef) error {
	if a.job != "" {
		err := c.client.BatchV1().Jobs(c.namespace).Delete(ctx, a.job, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To(int64(0)), PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if a.pod != "" {
		return c.deletePod(ctx, a.pod)
	}
	return nil
}

// jobFinished: the Job completed or failed.
func jobFinished(j *batchv1.Job) bool {
	for _, cond := range j.Status.Conditions {
		if (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) && cond.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// waitPodGone waits (bounded by ctx) until the pod object is gone.
func (c *cluster) waitPodGone(ctx context.Context, name string) {
	for name != "" {
		_, err := c.client.CoreV1().Pods(c.namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return // gone, or no answer: nothing more to do here
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}
