package kubernetes

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/version"
)

func TestPodSpecHygiene(t *testing.T) {
	cfg := Config{Session: "s1", Owner: &Owner{User: "Dev User", Host: "laptop.local", PID: 42, Start: "7"}}
	cfg.defaults()
	p := podSpec(&cfg, "ssh-ed25519 AAAA", "PEM")
	s := p.Spec
	c := s.Containers[0]
	switch {
	case s.RestartPolicy != corev1.RestartPolicyNever:
		t.Error("restartPolicy")
	case s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken:
		t.Error("token")
	case !*c.SecurityContext.ReadOnlyRootFilesystem || !*s.SecurityContext.RunAsNonRoot || *s.SecurityContext.RunAsUser == 0:
		t.Error("security")
	case c.Resources.Limits.Memory().Value() > 128<<20:
		t.Error("memory limit")
	case c.ImagePullPolicy != corev1.PullIfNotPresent || c.Image != DefaultImage:
		t.Error("image")
	}
	if got := strings.Join(c.Args, " "); got != "ssh --listen :2222 --data-listen 127.0.0.1:2223 --idle-exit 1m0s" {
		t.Errorf("args %q", got)
	}
	want := map[string]string{LabelManagedBy: "tether", LabelSession: "s1", LabelOwnerUser: "Dev_User", LabelOwnerHost: "laptop.local", LabelOwnerPID: "42"}
	for k, v := range want {
		if p.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, p.Labels[k], v)
		}
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{"": "unknown", "a b": "a_b", "-x-": "x", strings.Repeat("a", 70): strings.Repeat("a", 63), "DOMAIN\\user": "DOMAIN_user"} {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFinishedOrOrphaned(t *testing.T) {
	me := CurrentOwner()
	pod := func(user, host string, pid int, start string, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelManagedBy: "tether", LabelOwnerUser: labelValue(user),
				LabelOwnerHost: labelValue(host), LabelOwnerPID: strconv.Itoa(pid)}, Annotations: map[string]string{AnnotationOwnerStart: start}},
			Status: corev1.PodStatus{Phase: phase},
		}
	}
	cases := []struct {
		name string
		p    *corev1.Pod
		want bool
	}{
		{"mine running", pod(me.User, me.Host, me.PID, me.Start, corev1.PodRunning), false},
		{"mine finished", pod(me.User, me.Host, me.PID, me.Start, corev1.PodSucceeded), true},
		{"other user finished", pod("someone", me.Host, me.PID, me.Start, corev1.PodSucceeded), false},
		{"other host finished", pod(me.User, "elsewhere", 1, "", corev1.PodFailed), false},
		{"owner process gone", pod(me.User, me.Host, 1<<22+7, "1", corev1.PodRunning), true},
		{"pid reused", pod(me.User, me.Host, me.PID, "not-"+me.Start, corev1.PodRunning), true},
	}
	for _, c := range cases {
		if got := finishedOrOrphaned(c.p, me); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestContexts(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "config")
	os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts:
- {name: b, context: {cluster: c, user: u, namespace: dev}}
- {name: a, context: {cluster: c, user: u}}
current-context: b
`), 0o600)
	ctxs, cur, err := Contexts(kc)
	if err != nil || cur != "b" || strings.Join(ctxs, ",") != "a,b" {
		t.Fatalf("%v %q %v", ctxs, cur, err)
	}
	c, err := connect(Config{Kubeconfig: kc})
	if err != nil || c.namespace != "dev" || c.context != "b" {
		t.Fatalf("%+v %v", c, err)
	}
	c, err = connect(Config{Kubeconfig: kc, Context: "a"})
	if err != nil || c.namespace != "default" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestJobSpec(t *testing.T) {
	cfg := Config{Session: "s1", Owner: &Owner{User: "dev", Host: "laptop", PID: 42, Start: "7"}}
	cfg.defaults()
	p := podSpec(&cfg, "ssh-ed25519 AAAA", "PEM")
	j := jobSpec(p)
	s := j.Spec
	if *s.TTLSecondsAfterFinished != 0 || *s.BackoffLimit != 0 || *s.Completions != 1 || *s.Parallelism != 1 {
		t.Errorf("job spec %+v", s)
	}
	if j.Labels[LabelOwnerPID] != "42" || s.Template.Labels[LabelSession] != "s1" || s.Template.Annotations[AnnotationOwnerStart] != "7" {
		t.Errorf("labels: job %v template %v", j.Labels, s.Template.Labels)
	}
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyNever || *s.Template.Spec.AutomountServiceAccountToken {
		t.Error("the template lost the pod's lockdown")
	}
}

// TestSPDYRefused: which answers to the SPDY upgrade make the dialer try
// WebSocket (a refusal of SPDY itself) and which would fail there too.
func TestSPDYRefused(t *testing.T) {
	status := func(code int32) error {
		return &apierrors.StatusError{ErrStatus: metav1.Status{Code: code}}
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{status(403), true}, // RBAC: only get (WebSocket) on pods/portforward
		{status(400), true},
		{status(426), true},
		{errors.New("unable to upgrade connection: 200 OK from a proxy"), true},
		{&httpstream.UpgradeFailureError{Cause: errors.New("x")}, true},
		{status(404), false},
		{status(401), false},
		{status(500), false},
		{errors.New("error sending request: dial tcp 10.0.0.1:443: connect: connection refused"), false},
	} {
		if got := spdyRefused(c.err); got != c.want {
			t.Errorf("spdyRefused(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestPortForwardSetting(t *testing.T) {
	if _, err := newPFDialer(&cluster{}, "http2"); err == nil || !strings.Contains(err.Error(), "portForward") {
		t.Errorf("bad portForward: %v", err)
	}
}

type fakeDialer struct {
	err   error
	calls int
}

func (f *fakeDialer) Dial(...string) (httpstream.Connection, string, error) {
	f.calls++
	return nil, "", f.err
}

// TestFallbackDialer: the second protocol is tried only after a refusal of
// the first, and the order changes only when the second one worked and
// the order is the default one.
func TestFallbackDialer(t *testing.T) {
	forbidden := &apierrors.StatusError{ErrStatus: metav1.Status{Code: 403}}
	notFound := errors.New("unable to upgrade connection: pod does not exist")
	for _, c := range []struct {
		name             string
		firstErr, secErr error
		sticky           bool
		wantSecond       int
		wantErr          bool
		wantProto        string
		wantSPDYFirst    bool
	}{
		{"spdy works", nil, nil, true, 0, false, "spdy", true},
		{"spdy refused, websocket works", forbidden, nil, true, 1, false, "websocket", false},
		{"refused both ways", notFound, notFound, true, 1, true, "", true},
		{"not a refusal", errors.New("error sending request: dial tcp: refused"), nil, true, 0, true, "", true},
		{"set order is kept", forbidden, nil, false, 1, false, "websocket", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := &pfDialer{}
			d.spdyFirst.Store(true)
			first, second := &fakeDialer{err: c.firstErr}, &fakeDialer{err: c.secErr}
			f := &fallbackDialer{d: d, first: first, second: second, firstSPDY: true, refused: spdyRefused, sticky: c.sticky}
			_, _, err := f.Dial("x")
			if (err != nil) != c.wantErr || second.calls != c.wantSecond {
				t.Errorf("err %v, second dialled %d times", err, second.calls)
			}
			if p, _ := d.protocol.Load().(string); p != c.wantProto || d.spdyFirst.Load() != c.wantSPDYFirst {
				t.Errorf("protocol %q, spdy first %v", p, d.spdyFirst.Load())
			}
		})
	}
}

func TestWebsocketNeedsOnlyGet(t *testing.T) {
	for _, c := range []struct {
		major, minor string
		want         bool
	}{{"1", "34", true}, {"1", "31+", true}, {"1", "35", false}, {"1", "36", false}, {"", "", false}} {
		if got := websocketNeedsOnlyGet(version.Info{Major: c.major, Minor: c.minor}); got != c.want {
			t.Errorf("%s.%s: %v, want %v", c.major, c.minor, got, c.want)
		}
	}
}
