package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tether-dev/tether/internal/errcat"
)

// kubeconfigFor writes a kubeconfig whose only context points at server.
func kubeconfigFor(t *testing.T, server string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %q}
users:
- name: u
  user: {token: t}
contexts:
- name: dev
  context: {cluster: c, user: u, namespace: dev}
current-context: dev
`, server)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestErrorCategories(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("HOME", t.TempDir())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + ln.Addr().String()
	ln.Close()
	good := kubeconfigFor(t, closed)
	garbage := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(garbage, []byte("{{{ not yaml"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	namespaces := func(cfg Config) error { _, err := Namespaces(ctx, cfg); return err }
	contexts := func(kubeconfig string) error { _, _, err := Contexts(kubeconfig); return err }

	gr := schema.GroupResource{Resource: "pods"}
	cases := []struct {
		name string
		err  error
		want errcat.Category
	}{
		{"no kubeconfig", namespaces(Config{}), errcat.Config},
		{"kubeconfig missing", namespaces(Config{Kubeconfig: filepath.Join(t.TempDir(), "nope")}), errcat.Config},
		{"kubeconfig not YAML", contexts(garbage), errcat.Config},
		{"no such context", namespaces(Config{Kubeconfig: good, Context: "prod"}), errcat.Config},
		{"API server unreachable", namespaces(Config{Kubeconfig: good}), errcat.Environment},
		{"forbidden (RBAC)", explain(apierrors.NewForbidden(gr, "x", errors.New("no"))), errcat.Config},
		{"credentials rejected", explain(apierrors.NewUnauthorized("expired")), errcat.Config},
		{"not found", explain(apierrors.NewNotFound(gr, "x")), errcat.Config},
		{"API server overloaded", explain(apierrors.NewServiceUnavailable("busy")), errcat.Environment},
		{"API server slow", explain(fmt.Errorf("get: %w", context.DeadlineExceeded)), errcat.Environment},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil {
				t.Fatal("no error")
			}
			t.Logf("%v", c.err)
			if got := errcat.Of(c.err); got != c.want {
				t.Fatalf("category %q, want %q: %v", got, c.want, c.err)
			}
		})
	}
}

// An agent pod that cannot start is an environment error, unless the
// proxy's image name itself is wrong.
func TestWaitReadyCategories(t *testing.T) {
	for reason, want := range map[string]errcat.Category{
		"ImagePullBackOff":  errcat.Environment,
		"ErrImageNeverPull": errcat.Environment,
		"InvalidImageName":  errcat.Config,
	} {
		t.Run(reason, func(t *testing.T) {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "dev"},
				Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "m"}}}}},
			}
			c := &cluster{client: fake.NewSimpleClientset(pod), namespace: "dev"}
			cfg := Config{ReadyTimeout: 5 * time.Second}
			cfg.defaults()
			_, err := c.waitReady(context.Background(), &cfg, "agent")
			if got := errcat.Of(err); got != want {
				t.Fatalf("category %q, want %q: %v", got, want, err)
			}
		})
	}
	t.Run("not ready in time", func(t *testing.T) {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "dev"}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
		c := &cluster{client: fake.NewSimpleClientset(pod), namespace: "dev"}
		cfg := Config{ReadyTimeout: 300 * time.Millisecond}
		cfg.defaults()
		_, err := c.waitReady(context.Background(), &cfg, "agent")
		if got := errcat.Of(err); got != errcat.Environment {
			t.Fatalf("category %q, want environment: %v", got, err)
		}
	})
}
