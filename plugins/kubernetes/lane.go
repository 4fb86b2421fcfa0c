package kubernetes

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/tether-dev/tether/internal/agentproto"
	"github.com/tether-dev/tether/internal/errcat"
)

// Lanes (docs/lanes.md), cluster side. Per Service, shared by every
// developer of it: a base Service <svc>-tether-base with the original
// selector, a router Deployment <svc>-tether-router (tether-agent router),
// and the Service's selector pointed at the router pods, the original one
// kept in an annotation. The router has no service-account token: laptops
// (which have API credentials) set it up and restore it.
const (
	LabelLaneService = "tether.dev/lane-service" // on our objects: the Service they belong to
	LabelLaneRouter  = "tether.dev/lane-router"  // router pods: the Service's selector while lanes run
	// AnnotationLaneSelector on the Service: its original selector (JSON).
	AnnotationLaneSelector = "tether.dev/lane-original-selector"
	// AnnotationLaneRouter on the Service: the router Deployment.
	AnnotationLaneRouter = "tether.dev/lane-router"

	routerControlPort = 7070
	// RouterIdleRestore: a router without routes for this long is restored
	// by `tether clean` and by any session start.
	RouterIdleRestore = 10 * time.Minute
)

// LaneRouter is a Service's router as a laptop uses it.
type LaneRouter struct {
	Namespace, Service string
	Deployment         string
	Pod, PodIP         string
	Token              string
}

// Control is the router's control address (through a tunnel).
func (r *LaneRouter) Control() string {
	return net.JoinHostPort(r.PodIP, strconv.Itoa(routerControlPort))
}

func baseName(svc string) string   { return svc + "-tether-base" }
func routerName(svc string) string { return svc + "-tether-router" }

// EnsureRouter sets up the lane router of service (or finds the one another
// developer set up) and returns it once its pod is ready. The Service's
// selector is switched only after the router runs.
func EnsureRouter(ctx context.Context, cfg Config, service string) (*LaneRouter, error) {
	cfg.defaults()
	c, err := connect(cfg)
	if err != nil {
		return nil, err
	}
	svcs := c.client.CoreV1().Services(c.namespace)
	svc, err := svcs.Get(ctx, service, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("lane: Service %s/%s: %w", c.namespace, service, explain(err))
	}
	orig := svc.Spec.Selector
	if a := svc.Annotations[AnnotationLaneSelector]; a != "" {
		if err := json.Unmarshal([]byte(a), &orig); err != nil {
			return nil, errcat.Environment.Newf("lane: Service %s/%s: annotation %s: %w", c.namespace, service, AnnotationLaneSelector, err)
		}
	}
	if len(orig) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, errcat.Config.Newf("lane: Service %s/%s has no selector: lanes route Services that select pods", c.namespace, service)
	}
	for _, p := range svc.Spec.Ports {
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			return nil, errcat.Config.Newf("lane: Service %s/%s port %d is %s: the router carries TCP only", c.namespace, service, p.Port, p.Protocol)
		}
	}
	base, err := c.ensureBase(ctx, svc, orig)
	if err != nil {
		return nil, err
	}
	dep, err := c.ensureRouterDeployment(ctx, svc, base)
	if err != nil {
		return nil, err
	}
	if dep, err = c.createRouter(ctx, &cfg, dep); err != nil {
		return nil, err
	}
	token := ""
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		if e.Name == agentproto.RouterTokenEnv {
			token = e.Value
		}
	}
	pod, err := c.waitRouterPod(ctx, service, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	if svc.Annotations[AnnotationLaneSelector] == "" {
		if err := c.pointAtRouter(ctx, service); err != nil {
			return nil, err
		}
	}
	return &LaneRouter{Namespace: c.namespace, Service: service, Deployment: dep.Name, Pod: pod.Name, PodIP: pod.Status.PodIP, Token: token}, nil
}

func ourLabels(svc, name string) map[string]string {
	return map[string]string{LabelManagedBy: "tether", LabelName: name, LabelLaneService: svc}
}

// ensureBase creates <svc>-tether-base: the Service's ports with the
// original selector.
func (c *cluster) ensureBase(ctx context.Context, svc *corev1.Service, orig map[string]string) (*corev1.Service, error) {
	svcs := c.client.CoreV1().Services(c.namespace)
	b := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: baseName(svc.Name), Labels: ourLabels(svc.Name, "tether-lane-base")},
		Spec:       corev1.ServiceSpec{Selector: orig, Type: corev1.ServiceTypeClusterIP},
	}
	for _, p := range svc.Spec.Ports {
		b.Spec.Ports = append(b.Spec.Ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol,
			Port: p.Port, TargetPort: p.TargetPort})
	}
	got, err := svcs.Create(ctx, b, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = svcs.Get(ctx, b.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("lane: base Service %s/%s: %w", c.namespace, b.Name, explain(err))
	}
	return got, nil
}

// routerPorts maps each Service port to the port the router listens on: a
// numeric targetPort is kept; a named one gets a free port under the same
// name on the router's container.
func routerPorts(svc *corev1.Service) (ports []corev1.ContainerPort, args []string, lowPort bool) {
	used := map[int32]bool{routerControlPort: true}
	for _, p := range svc.Spec.Ports {
		if p.TargetPort.Type == intstr.Int {
			used[targetPort(p)] = true
		}
	}
	next := int32(20000)
	names := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		var listen int32
		name := ""
		if p.TargetPort.Type == intstr.String && p.TargetPort.StrVal != "" {
			name = p.TargetPort.StrVal
			if n, ok := names[name]; ok {
				listen = n
			} else {
				for used[next] {
					next++
				}
				listen, names[name] = next, next
				used[next] = true
			}
		} else {
			listen = targetPort(p)
		}
		if listen < 1024 {
			lowPort = true
		}
		if name != "" || !containsPort(ports, listen) {
			ports = append(ports, corev1.ContainerPort{Name: name, ContainerPort: listen, Protocol: corev1.ProtocolTCP})
		}
		args = append(args, "--port", fmt.Sprintf(":%d=BASE:%d", listen, p.Port))
	}
	return ports, args, lowPort
}

func containsPort(ps []corev1.ContainerPort, n int32) bool {
	for _, p := range ps {
		if p.ContainerPort == n {
			return true
		}
	}
	return false
}

func targetPort(p corev1.ServicePort) int32 {
	if p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal != 0 {
		return p.TargetPort.IntVal
	}
	return p.Port
}

func (c *cluster) ensureRouterDeployment(ctx context.Context, svc *corev1.Service, base *corev1.Service) (*appsv1.Deployment, error) {
	deps := c.client.AppsV1().Deployments(c.namespace)
	name := routerName(svc.Name)
	if d, err := deps.Get(ctx, name, metav1.GetOptions{}); err == nil {
		return d, nil
	} else if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("lane: router %s/%s: %w", c.namespace, name, explain(err))
	}
	ports, args, low := routerPorts(svc)
	for i, a := range args {
		args[i] = strings.Replace(a, "BASE", base.Spec.ClusterIP, 1)
	}
	args = append([]string{"router", "--control", ":" + strconv.Itoa(routerControlPort)}, args...)
	ports = append(ports, corev1.ContainerPort{Name: "tether-control", ContainerPort: routerControlPort, Protocol: corev1.ProtocolTCP})
	tok := make([]byte, 16)
	rand.Read(tok)
	uid := int64(65532)
	podLabels := ourLabels(svc.Name, "tether-lane-router")
	podLabels[LabelLaneRouter] = svc.Name
	sec := &corev1.PodSecurityContext{
		RunAsNonRoot: ptr.To(true), RunAsUser: &uid, RunAsGroup: &uid,
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if low { // a targetPort below 1024, without any capability
		sec.Sysctls = []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: ourLabels(svc.Name, "tether-lane-router")},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelLaneRouter: svc.Name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken:  ptr.To(false),
					EnableServiceLinks:            ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To(int64(2)),
					SecurityContext:               sec,
					Containers: []corev1.Container{{
						Name: "router", Image: "", Args: args, Ports: ports,
						Env: []corev1.EnvVar{{Name: agentproto.RouterTokenEnv, Value: hex.EncodeToString(tok)}, {Name: "GOMEMLIMIT", Value: "96MiB"}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(routerControlPort)}},
							PeriodSeconds: 1},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("128Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true), RunAsNonRoot: ptr.To(true),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
	return d, nil
}

// createRouter fills in the image and creates d (AlreadyExists: the other
// developer's wins).
func (c *cluster) createRouter(ctx context.Context, cfg *Config, d *appsv1.Deployment) (*appsv1.Deployment, error) {
	deps := c.client.AppsV1().Deployments(c.namespace)
	if d.UID != "" {
		return d, nil // it exists
	}
	d.Spec.Template.Spec.Containers[0].Image = cfg.Image
	d.Spec.Template.Spec.Containers[0].ImagePullPolicy = corev1.PullPolicy(cfg.ImagePullPolicy)
	got, err := deps.Create(ctx, d, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = deps.Get(ctx, d.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("lane: creating the router %s/%s: %w", c.namespace, d.Name, explain(err))
	}
	return got, nil
}

// waitRouterPod waits for a ready router pod of service.
func (c *cluster) waitRouterPod(ctx context.Context, service string, timeout time.Duration) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		l, err := c.client.CoreV1().Pods(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelLaneRouter + "=" + service})
		if err == nil {
			for i := range l.Items {
				if p := &l.Items[i]; p.DeletionTimestamp == nil && podReady(p) {
					return p, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, errcat.Environment.Newf("lane: the router of Service %s/%s is not ready after %v", c.namespace, service, timeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
		return false
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// pointAtRouter records the Service's selector and points it at the router.
func (c *cluster) pointAtRouter(ctx context.Context, service string) error {
	svcs := c.client.CoreV1().Services(c.namespace)
	for range 10 {
		svc, err := svcs.Get(ctx, service, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("lane: Service %s/%s: %w", c.namespace, service, explain(err))
		}
		if svc.Annotations[AnnotationLaneSelector] != "" {
			return nil // another developer did it
		}
		orig, _ := json.Marshal(svc.Spec.Selector)
		if svc.Annotations == nil {
			svc.Annotations = map[string]string{}
		}
		svc.Annotations[AnnotationLaneSelector] = string(orig)
		svc.Annotations[AnnotationLaneRouter] = routerName(service)
		svc.Spec.Selector = map[string]string{LabelLaneRouter: service}
		_, err = svcs.Update(ctx, svc, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("lane: pointing Service %s/%s at the router: %w", c.namespace, service, explain(err))
		}
		return nil
	}
	return errcat.Environment.Newf("lane: Service %s/%s keeps changing; try again", c.namespace, service)
}

// RestoreService puts the Service's original selector back, waits until its
// EndpointSlices no longer name a router pod, then deletes the router and
// the base Service. Safe to call when nothing is set up.
func RestoreService(ctx context.Context, cfg Config, service string) error {
	cfg.defaults()
	c, err := connect(cfg)
	if err != nil {
		return err
	}
	return c.restore(ctx, service)
}

func (c *cluster) restore(ctx context.Context, service string) error {
	svcs := c.client.CoreV1().Services(c.namespace)
	routerIPs := map[string]bool{}
	if l, err := c.client.CoreV1().Pods(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelLaneRouter + "=" + service}); err == nil {
		for _, p := range l.Items {
			if p.Status.PodIP != "" {
				routerIPs[p.Status.PodIP] = true
			}
		}
	}
	restored := false
	for range 10 {
		svc, err := svcs.Get(ctx, service, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if err != nil {
			return fmt.Errorf("lane: Service %s/%s: %w", c.namespace, service, explain(err))
		}
		a := svc.Annotations[AnnotationLaneSelector]
		if a == "" {
			break
		}
		var orig map[string]string
		if err := json.Unmarshal([]byte(a), &orig); err != nil || len(orig) == 0 {
			return errcat.Environment.Newf("lane: Service %s/%s: annotation %s is not a selector (%q): restore it by hand", c.namespace, service, AnnotationLaneSelector, a)
		}
		svc.Spec.Selector = orig
		delete(svc.Annotations, AnnotationLaneSelector)
		delete(svc.Annotations, AnnotationLaneRouter)
		_, err = svcs.Update(ctx, svc, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("lane: restoring the selector of Service %s/%s: %w", c.namespace, service, explain(err))
		}
		restored = true
		break
	}
	if restored && len(routerIPs) > 0 {
		if err := c.waitEndpointsOff(ctx, service, routerIPs); err != nil {
			return err
		}
		// kube-proxy applies the slices a moment after they change;
		// connections it still sends to the router are served meanwhile.
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	var errs []error
	bg := metav1.DeletePropagationBackground
	if err := c.client.AppsV1().Deployments(c.namespace).Delete(ctx, routerName(service), metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, explain(err))
	}
	if err := c.client.CoreV1().Pods(c.namespace).DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: LabelLaneRouter + "=" + service}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, explain(err))
	}
	if err := svcs.Delete(ctx, baseName(service), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, explain(err))
	}
	return errors.Join(errs...)
}

// waitEndpointsOff waits until no EndpointSlice of service names a router IP.
func (c *cluster) waitEndpointsOff(ctx context.Context, service string, routerIPs map[string]bool) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		l, err := c.client.DiscoveryV1().EndpointSlices(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
		if err == nil && !slicesName(l.Items, routerIPs) {
			return nil
		}
		select {
		case <-ctx.Done():
			return errcat.Environment.Newf("lane: the EndpointSlices of Service %s/%s still name the router after 30s", c.namespace, service)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func slicesName(slices []discoveryv1.EndpointSlice, ips map[string]bool) bool {
	for _, s := range slices {
		for _, e := range s.Endpoints {
			for _, a := range e.Addresses {
				if ips[a] {
					return true
				}
			}
		}
	}
	return false
}

// Register registers (or renews) lane on the router through dial (the
// developer's tunnel).
func (r *LaneRouter) Register(ctx context.Context, hc *http.Client, lane string, req agentproto.RouteRequest) (agentproto.RouteReply, error) {
	var rep agentproto.RouteReply
	err := r.call(ctx, hc, http.MethodPut, "/v1/lanes/"+lane, req, &rep)
	return rep, err
}

// Deregister removes lane (if session still owns it) and returns the
// router's status afterwards.
func (r *LaneRouter) Deregister(ctx context.Context, hc *http.Client, lane, session string) (agentproto.RouterStatus, error) {
	var st agentproto.RouterStatus
	err := r.call(ctx, hc, http.MethodDelete, "/v1/lanes/"+lane+"?session="+session, nil, &st)
	return st, err
}

func (r *LaneRouter) call(ctx context.Context, hc *http.Client, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+r.Control()+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.Token)
	resp, err := hc.Do(req)
	if err != nil {
		return errcat.Environment.Wrap(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err := fmt.Errorf("router %s: %s: %s", r.Pod, resp.Status, strings.TrimSpace(string(b)))
		if resp.StatusCode == http.StatusBadRequest {
			return err // Tether sent a request the router does not understand: a bug
		}
		return errcat.Environment.Wrap(err)
	}
	return errcat.Environment.Wrap(json.NewDecoder(resp.Body).Decode(out))
}

// routerCall asks a router pod through the API server's pod proxy (for
// clean, which has no tunnel).
func (c *cluster) routerCall(ctx context.Context, pod, token, method, path, session string, out any) error {
	req := c.client.CoreV1().RESTClient().Verb(method).Namespace(c.namespace).Resource("pods").
		Name(pod+":"+strconv.Itoa(routerControlPort)).SubResource("proxy").Suffix(path).
		SetHeader(agentproto.RouterTokenHeader, token)
	if session != "" {
		req = req.Param("session", session)
	}
	b, err := req.DoRaw(ctx)
	if err != nil {
		return explain(err)
	}
	return errcat.Environment.Wrap(json.Unmarshal(b, out))
}

// CleanLanes restores the Services of the namespace whose router is idle:
// it removes the routes of this owner's dead processes, then restores a
// Service whose router has no route and either has had none for
// RouterIdleRestore or lost its last route to a dead process of this
// owner; a Service pointed at a router that no longer exists is restored
// at once. It returns the restored Services as namespace/name.
func CleanLanes(ctx context.Context, cfg Config) ([]string, error) {
	cfg.defaults()
	c, err := connect(cfg)
	if err != nil {
		return nil, err
	}
	l, err := c.client.CoreV1().Services(c.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, explain(err)
	}
	o := *cfg.Owner
	var done []string
	var errs []error
	for _, svc := range l.Items {
		if svc.Annotations[AnnotationLaneSelector] == "" {
			continue
		}
		restore, err := c.routerIdle(ctx, svc.Name, o)
		if err != nil {
			errs = append(errs, errcat.Environment.Newf("lane router of Service %s/%s: %w", c.namespace, svc.Name, err))
			continue
		}
		if !restore {
			continue
		}
		cfg.Logger.Info("restoring Service after idle lane router", "service", svc.Name)
		if err := c.restore(ctx, svc.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, c.namespace+"/"+svc.Name)
	}
	sort.Strings(done)
	return done, errors.Join(errs...)
}

func (c *cluster) routerIdle(ctx context.Context, service string, o Owner) (bool, error) {
	dep, err := c.client.AppsV1().Deployments(c.namespace).Get(ctx, routerName(service), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil // pointed at nothing: restore
	}
	if err != nil {
		return false, explain(err)
	}
	token := ""
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		if e.Name == agentproto.RouterTokenEnv {
			token = e.Value
		}
	}
	pod, err := c.waitRouterPod(ctx, service, 10*time.Second)
	if err != nil {
		return false, err
	}
	var st agentproto.RouterStatus
	if err := c.routerCall(ctx, pod.Name, token, http.MethodGet, "v1/status", "", &st); err != nil {
		return false, err
	}
	mine := func(ro agentproto.RouteOwner) bool {
		return ro.User == o.User && ro.Host == o.Host && ro.PID > 0 &&
			!(alive(ro.PID) && (ro.Start == "" || procStart(ro.PID) == ro.Start))
	}
	deadMine := false
	for _, rt := range st.Routes {
		if !mine(rt.Owner) {
			continue
		}
		var after agentproto.RouterStatus
		if err := c.routerCall(ctx, pod.Name, token, http.MethodDelete, "v1/lanes/"+rt.Lane, rt.Session, &after); err != nil {
			return false, err
		}
		deadMine, st = true, after
	}
	for _, ro := range st.Expired {
		if mine(ro) {
			deadMine = true
		}
	}
	return len(st.Routes) == 0 && (deadMine || st.IdleSeconds >= RouterIdleRestore.Seconds()), nil
}
