package kubernetes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/user"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/utils/ptr"

	"github.com/tether-dev/tether/internal/agentproto"
	"github.com/tether-dev/tether/internal/errcat"
)

// Labels and annotations of agent pods.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by" // = tether
	LabelName      = "app.kubernetes.io/name"       // = tether-agent
	LabelSession   = "tether.dev/session"
	LabelOwnerUser = "tether.dev/owner-user"
	LabelOwnerHost = "tether.dev/owner-host"
	LabelOwnerPID  = "tether.dev/owner-pid"
	// AnnotationOwnerStart is the owner process's start time (clock ticks
	// since boot, /proc/PID/stat field 22), so that a reused PID is not
	// mistaken for the owner.
	AnnotationOwnerStart = "tether.dev/owner-start"
	AnnotationOwner      = "tether.dev/owner" // user@host, unsanitised
)

// Owner identifies the developer process that created a pod.
type Owner struct {
	User  string
	Host  string
	PID   int
	Start string // process start time; "" = unknown
}

// CurrentOwner is this process.
func CurrentOwner() Owner {
	o := Owner{PID: os.Getpid()}
	if u, err := user.Current(); err == nil {
		o.User = u.Username
	}
	o.Host, _ = os.Hostname()
	o.Start = procStart(o.PID)
	return o
}

// procStart returns field 22 of /proc/PID/stat, "" when unavailable.
func procStart(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 19 {
			return f[19]
		}
	}
	return ""
}

var badLabel = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// labelValue makes s a valid label value (63 chars, alphanumeric ends).
func labelValue(s string) string {
	s = badLabel.ReplaceAllString(s, "_")
	if len(s) > 63 {
		s = s[:63]
	}
	s = strings.Trim(s, "_.-")
	if s == "" {
		return "unknown"
	}
	return s
}

func (o Owner) selector() string {
	return fmt.Sprintf("%s=tether,%s=%s,%s=%s", LabelManagedBy, LabelOwnerUser, labelValue(o.User), LabelOwnerHost, labelValue(o.Host))
}

func newSession() string {
	b := make([]byte, 5)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// podSpec is the agent pod: non-root, read-only root filesystem, no
// service-account token, memory limit 128Mi, restartPolicy Never, the
// per-session keys in the environment.
func podSpec(cfg *Config, authorizedKey, hostKeyPEM string) *corev1.Pod {
	o := cfg.Owner
	labels := map[string]string{}
	for k, v := range cfg.Extra {
		labels[k] = v
	}
	for k, v := range map[string]string{
		LabelManagedBy: "tether",
		LabelName:      "tether-agent",
		LabelSession:   labelValue(cfg.Session),
		LabelOwnerUser: labelValue(o.User),
		LabelOwnerHost: labelValue(o.Host),
		LabelOwnerPID:  strconv.Itoa(o.PID),
	} {
		labels[k] = v
	}
	uid := int64(65532)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "tether-agent-" + labelValue(cfg.Session) + "-",
			Labels:       labels,
			Annotations: map[string]string{
				AnnotationOwner:      o.User + "@" + o.Host,
				AnnotationOwnerStart: o.Start,
			},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To(int64(2)),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      &uid,
				RunAsGroup:     &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            "agent",
				Image:           cfg.Image,
				ImagePullPolicy: corev1.PullPolicy(cfg.ImagePullPolicy),
				Args:            agentproto.PodArgs(cfg.IdleExit),
				Env: []corev1.EnvVar{
					{Name: agentproto.EnvAuthorizedKeys, Value: authorizedKey},
					{Name: agentproto.EnvHostKey, Value: hostKeyPEM},
					{Name: "GOMEMLIMIT", Value: "96MiB"},
				},
				Ports: []corev1.ContainerPort{{Name: "ssh", ContainerPort: agentproto.SSHPort, Protocol: corev1.ProtocolTCP}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse("50m"),
						corev1.ResourceMemory: resource.MustParse("32Mi"),
					},
					Limits: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse("1"),
						corev1.ResourceMemory: resource.MustParse("128Mi"),
					},
				},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					ReadOnlyRootFilesystem:   ptr.To(true),
					RunAsNonRoot:             ptr.To(true),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
		},
	}
}

// imageErrors are container waiting reasons that will not fix themselves.
var imageErrors = map[string]string{
	"ErrImageNeverPull":          "the image is not on the node and imagePullPolicy forbids pulling it",
	"ErrImagePull":               "the image cannot be pulled",
	"ImagePullBackOff":           "the image cannot be pulled",
	"InvalidImageName":           "the image name is invalid",
	"CreateContainerConfigError": "the container configuration is invalid",
	"CreateContainerError":       "the container cannot be created",
	"RunContainerError":          "the container cannot be started",
}

// waitReady waits until the pod's agent container runs and returns the pod.
// Scheduling failures, image errors and early exits become clear errors.
func (c *cluster) waitReady(ctx context.Context, cfg *Config, name string) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer cancel()
	pods := c.client.CoreV1().Pods(c.namespace)
	var last string
	say := func(msg string) {
		if msg != last {
			last = msg
			cfg.progress("%s", msg)
		}
	}
	var unschedSince time.Time
	for {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, errcat.Environment.Newf("kubernetes: agent pod %s/%s was deleted while starting", c.namespace, name)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, c.timeoutError(cfg, name, last)
			}
			return nil, explain(err)
		}
		switch p.Status.Phase {
		case corev1.PodSucceeded, corev1.PodFailed:
			return nil, errcat.Environment.Newf("kubernetes: agent pod %s/%s ended before it was ready (%s)%s", c.namespace, name, p.Status.Phase, c.podDetail(ctx, p))
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
				if unschedSince.IsZero() {
					unschedSince = time.Now()
				}
				say("Agent pod cannot be scheduled yet: " + cond.Message)
				if time.Since(unschedSince) > 15*time.Second {
					return nil, errcat.Environment.Newf("kubernetes: the agent pod cannot be scheduled in namespace %s: %s", c.namespace, cond.Message)
				}
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				if why, bad := imageErrors[w.Reason]; bad {
					hint := ""
					if strings.HasPrefix(w.Reason, "ErrImage") || w.Reason == "ImagePullBackOff" {
						hint = fmt.Sprintf(" (image %q; load it on the node or push it to a registry the cluster can pull from, and set the proxy's image)", cfg.Image)
					}
					cat := errcat.Environment // the node, the registry
					if w.Reason == "InvalidImageName" {
						cat = errcat.Config // the proxy's image
					}
					return nil, cat.Newf("kubernetes: agent pod %s/%s: %s: %s: %s%s", c.namespace, name, why, w.Reason, w.Message, hint)
				}
				if w.Reason != "" {
					say(fmt.Sprintf("Agent pod %s on %s: %s", name, p.Spec.NodeName, w.Reason))
					continue
				}
			}
			if t := cs.State.Terminated; t != nil {
				return nil, errcat.Environment.Newf("kubernetes: agent exited (code %d, %s): %s", t.ExitCode, t.Reason, strings.TrimSpace(t.Message))
			}
			if cs.State.Running != nil {
				return p, nil
			}
		}
		if p.Spec.NodeName != "" && len(p.Status.ContainerStatuses) == 0 {
			say(fmt.Sprintf("Agent pod %s scheduled on %s, starting", name, p.Spec.NodeName))
		}
		select {
		case <-ctx.Done():
			return nil, c.timeoutError(cfg, name, last)
		case <-time.After(150 * time.Millisecond):
		}
	}
}

func (c *cluster) timeoutError(cfg *Config, name, last string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	msg := fmt.Sprintf("kubernetes: agent pod %s/%s not ready after %v", c.namespace, name, cfg.ReadyTimeout)
	if last != "" {
		msg += " (" + last + ")"
	}
	if ev := c.warnings(ctx, name); ev != "" {
		msg += ": " + ev
	}
	return errcat.Environment.New(msg)
}

// warnings summarises the pod's Warning events, newest last.
func (c *cluster) warnings(ctx context.Context, name string) string {
	evs, err := c.client.CoreV1().Events(c.namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.AndSelectors(
			fields.OneTermEqualSelector("involvedObject.name", name),
			fields.OneTermEqualSelector("type", corev1.EventTypeWarning)).String(),
	})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	sort.Slice(evs.Items, func(i, j int) bool { return evs.Items[i].LastTimestamp.Before(&evs.Items[j].LastTimestamp) })
	var parts []string
	for _, e := range evs.Items {
		parts = append(parts, e.Reason+": "+e.Message)
	}
	if len(parts) > 3 {
		parts = parts[len(parts)-3:]
	}
	return strings.Join(parts, "; ")
}

func (c *cluster) podDetail(ctx context.Context, p *corev1.Pod) string {
	var parts []string
	for _, cs := range p.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			parts = append(parts, fmt.Sprintf("exit code %d %s %s", t.ExitCode, t.Reason, strings.TrimSpace(t.Message)))
		}
	}
	if w := c.warnings(ctx, p.Name); w != "" {
		parts = append(parts, w)
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, "; ")
}

// deletePod deletes a pod at once (grace period 0: the API object goes
// immediately, the kubelet stops the container).
func (c *cluster) deletePod(ctx context.Context, name string) error {
	err := c.client.CoreV1().Pods(c.namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
