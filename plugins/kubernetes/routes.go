package kubernetes

import (
	"context"
	"net/netip"
	"regexp"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// DefaultRoutes discovers what a kubernetes proxy routes through the tunnel
// when the user gave no routes:
//
// CIDRs:
//   - the service CIDR(s): the ServiceCIDR objects (networking.k8s.io/v1,
//     Kubernetes 1.33+); else the range the API server names when asked (dry
//     run) for a Service with an impossible ClusterIP; else the /16 around the
//     `kubernetes` Service's ClusterIP;
//   - the pod CIDRs: the nodes' spec.podCIDRs; else (nodes not listable, or no
//     IPAM by the controller manager) the /16s of the pod IPs seen in the
//     namespace.
//
// Domains: the cluster domain (cluster.local unless Config.ClusterDomain says
// otherwise; it covers svc.cluster.local and pod names) and the name of
// every namespace the user can list (or only the configured one), so that
// the short form `orders.dev` (service.namespace) goes through the tunnel
// and is expanded by the pod's resolver (search path
// `<ns>.svc.cluster.local svc.cluster.local cluster.local`). A namespace
// named like a public TLD ("dev") thus sends public names under it through
// the cluster too; they still resolve there as long as the cluster's DNS
// forwards to the internet. Single-label names (`orders`) are not routed.
func DefaultRoutes(ctx context.Context, cfg Config) (cidrs, domains []string, err error) {
	cfg.defaults()
	c, err := connect(cfg)
	if err != nil {
		return nil, nil, err
	}
	seen := map[netip.Prefix]bool{}
	add := func(p netip.Prefix) {
		if p.IsValid() && !seen[p.Masked()] {
			seen[p.Masked()] = true
			cidrs = append(cidrs, p.Masked().String())
		}
	}
	// Service CIDRs.
	found := false
	if l, err := c.client.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{}); err == nil {
		for _, sc := range l.Items {
			for _, s := range sc.Spec.CIDRs {
				if p, err := netip.ParsePrefix(s); err == nil {
					add(p)
					found = true
				}
			}
		}
	}
	if !found {
		if p, ok := serviceRangeFromError(ctx, c); ok {
			add(p)
			found = true
		}
	}
	if !found {
		if s, err := c.client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{}); err == nil {
			if a, err := netip.ParseAddr(s.Spec.ClusterIP); err == nil && a.Is4() {
				add(netip.PrefixFrom(a, 16))
			}
		}
	}
	// Pod CIDRs.
	found = false
	if nodes, err := c.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		for _, n := range nodes.Items {
			for _, s := range append([]string{n.Spec.PodCIDR}, n.Spec.PodCIDRs...) {
				if p, err := netip.ParsePrefix(s); err == nil {
					add(p)
					found = true
				}
			}
		}
	}
	if !found {
		if pods, err := c.client.CoreV1().Pods(c.namespace).List(ctx, metav1.ListOptions{Limit: 200}); err == nil {
			for _, p := range pods.Items {
				if p.Spec.HostNetwork {
					continue
				}
				for _, ip := range p.Status.PodIPs {
					if a, err := netip.ParseAddr(ip.IP); err == nil && a.Is4() {
						add(netip.PrefixFrom(a, 16))
					}
				}
			}
		}
	}
	// Domains.
	domains = []string{cfg.ClusterDomain}
	nsSeen := map[string]bool{cfg.ClusterDomain: true}
	addNS := func(n string) {
		if !nsSeen[n] {
			nsSeen[n] = true
			domains = append(domains, n)
		}
	}
	addNS(c.namespace)
	if l, err := c.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		var names []string
		for _, n := range l.Items {
			names = append(names, n.Name)
		}
		sort.Strings(names)
		for _, n := range names {
			addNS(n)
		}
	}
	return cidrs, domains, nil
}

var validIPsRE = regexp.MustCompile(`valid IPs is ([0-9a-fA-F.:/]+)`)

// serviceRangeFromError asks the API server (dry run) for a Service with a
// ClusterIP outside every sane range; the refusal names the service range.
func serviceRangeFromError(ctx context.Context, c *cluster) (netip.Prefix, bool) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "tether-probe-"},
		Spec: corev1.ServiceSpec{
			ClusterIP: "1.1.1.1",
			Ports:     []corev1.ServicePort{{Port: 443, TargetPort: intstr.FromInt32(443)}},
		},
	}
	_, err := c.client.CoreV1().Services(c.namespace).Create(ctx, svc, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil {
		return netip.Prefix{}, false
	}
	m := validIPsRE.FindStringSubmatch(err.Error())
	if m == nil {
		return netip.Prefix{}, false
	}
	p, perr := netip.ParsePrefix(m[1])
	return p, perr == nil
}
