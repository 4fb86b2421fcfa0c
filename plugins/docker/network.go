package docker

import (
	"context"
	"fmt"
	"net"

	"github.com/docker/docker/api/types/network"

	"github.com/tether-dev/tether/internal/errcat"
)

// GatewayIP returns the gateway of the default bridge network (e.g.
// 172.17.0.1): the host address containers reach, where the backend's SOCKS
// listener for sidecars must listen. Some daemons leave the IPAM gateway
// empty (Debian's 20.10 here); then the bridge interface's address is used,
// or else the first address of the subnet (what Docker assigns).
func (d *Docker) GatewayIP(ctx context.Context) (string, error) {
	n, err := d.api.NetworkInspect(ctx, "bridge", network.InspectOptions{})
	if err != nil {
		return "", d.daemonError(fmt.Errorf("inspect the default bridge network: %w", err))
	}
	var subnets []*net.IPNet
	for _, c := range n.IPAM.Config {
		if ip := net.ParseIP(c.Gateway); ip != nil && ip.To4() != nil {
			return ip.String(), nil
		}
		if _, sn, err := net.ParseCIDR(c.Subnet); err == nil && sn.IP.To4() != nil {
			subnets = append(subnets, sn)
		}
	}
	if name := n.Options["com.docker.network.bridge.name"]; name != "" {
		if ifc, err := net.InterfaceByName(name); err == nil {
			if addrs, err := ifc.Addrs(); err == nil {
				for _, a := range addrs {
					ipn, ok := a.(*net.IPNet)
					if !ok || ipn.IP.To4() == nil {
						continue
					}
					if len(subnets) == 0 {
						return ipn.IP.String(), nil
					}
					for _, sn := range subnets {
						if sn.Contains(ipn.IP) {
							return ipn.IP.String(), nil
						}
					}
				}
			}
		}
	}
	if len(subnets) > 0 {
		ip := subnets[0].IP.To4()
		gw := net.IPv4(ip[0], ip[1], ip[2], ip[3]+1)
		return gw.String(), nil
	}
	return "", errcat.Environment.New("the default bridge network has no IPv4 gateway or subnet")
}
