package launch

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tether-dev/tether/channel"
	"github.com/tether-dev/tether/internal/agentproto"
	"github.com/tether-dev/tether/internal/connset"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/plugins/kubernetes"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/workspace"
)

// Lanes (docs/lanes.md), laptop side: per Service of the lane a reverse
// listener on the developer's agent pod, whose streams go to the local app
// once it accepted (then LaneReady tells the router to send the request);
// the route registered on the Service's router and renewed every second.

// laneRenew is how often a route is renewed; the router drops it after
// 15 s without renewal.
const laneRenew = time.Second

type laneSession struct {
	name    string
	id      string
	tun     *kubernetes.Tunnel
	cfg     kubernetes.Config
	log     *slog.Logger
	hc      *http.Client
	owner   agentproto.RouteOwner
	onFall  func(protocol.LaneFallbackParams)
	ctx     context.Context
	cancel  context.CancelFunc
	keepWG  sync.WaitGroup // the renewal loop
	wg      sync.WaitGroup // accept loops and carried streams
	stopped sync.Once

	mu       sync.Mutex
	services []*laneService
}

type laneService struct {
	spec      workspace.LaneService
	ln        net.Listener
	target    string
	router    *kubernetes.LaneRouter
	state     string
	err       string
	fallbacks int64
	conns     connset.Set
}

// laneTunnel adds the lane header to the app's HTTP requests through the
// tunnel (channel.WithLaneHeader on every stream it dials).
type laneTunnel struct {
	tunnel.Tunnel
	lane string
}

func (t laneTunnel) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := t.Tunnel.Dial(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return channel.WithLaneHeader(c, t.lane), nil
}

// startLane sets up the lane's routers and routes before the app starts.
func startLane(ctx context.Context, dir string, ic *Interconnect, px *workspace.Proxy, lane *workspace.Lane, h Hooks) (*laneSession, error) {
	kt, ok := ic.Tunnel.(*kubernetes.Tunnel)
	if !ok || px.Kubernetes == nil {
		return nil, errcat.Config.Newf("lane %s: proxy %s is not a kubernetes proxy: %w", lane.Name, px.Name, ErrNotSupported)
	}
	o := kubernetes.CurrentOwner()
	ls := &laneSession{name: lane.Name, id: ic.ID, tun: kt, cfg: kubeConfig(dir, px.Kubernetes, h.logger(), nil),
		log: h.logger().With("session", ic.ID, "lane", lane.Name), owner: agentproto.RouteOwner{User: o.User, Host: o.Host, PID: o.PID, Start: o.Start},
		onFall: h.OnLaneFallback}
	ls.hc = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext:         func(ctx context.Context, network, addr string) (net.Conn, error) { return kt.Dial(ctx, network, addr) },
		MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}}
	ls.ctx, ls.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, s := range lane.Services {
		ls.services = append(ls.services, &laneService{spec: s, state: "starting"})
	}
	for _, s := range ls.services {
		if err := ls.setup(ctx, s); err != nil {
			ls.Close()
			return nil, err
		}
	}
	ls.keepWG.Go(ls.keep)
	return ls, nil
}

// setup (re)creates the reverse listener, ensures the router and registers.
func (ls *laneSession) setup(ctx context.Context, s *laneService) error {
	ip := ls.tun.PodIP()
	ls.mu.Lock()
	ln, target := s.ln, s.target
	ls.mu.Unlock()
	if ln == nil || ip == "" || !sameHost(target, ip) {
		if ln != nil {
			ln.Close()
		}
		nl, err := ls.tun.Listen(ctx, "tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return errcat.Environment.Newf("lane %s: listening on the agent pod: %w", ls.name, err)
		}
		_, port, _ := net.SplitHostPort(nl.Addr().String())
		ls.mu.Lock()
		s.ln, s.target = nl, net.JoinHostPort(ip, port)
		ls.mu.Unlock()
		ls.wg.Go(func() { ls.serve(s, nl) })
	}
	if s.router == nil {
		r, err := kubernetes.EnsureRouter(ctx, ls.cfg, s.spec.Service)
		if err != nil {
			return errcat.Environment.Newf("lane %s: %w", ls.name, err)
		}
		ls.mu.Lock()
		s.router = r
		ls.mu.Unlock()
	}
	return ls.register(ctx, s)
}

func sameHost(hostport, ip string) bool {
	h, _, _ := net.SplitHostPort(hostport)
	return h == ip
}

func (ls *laneSession) register(ctx context.Context, s *laneService) error {
	ls.mu.Lock()
	r, target := s.router, s.target
	ls.mu.Unlock()
	rep, err := r.Register(ctx, ls.hc, ls.name, agentproto.RouteRequest{Target: target, Session: ls.id, Owner: ls.owner})
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if err != nil {
		s.state, s.err = "retrying", err.Error()
		return errcat.Environment.Newf("lane %s: registering with the router of %s: %w", ls.name, s.spec.Service, err)
	}
	if s.state != "active" {
		ls.log.Info("lane active", "service", s.spec.Service, "router", r.Pod, "target", target)
	}
	s.state, s.err = "active", ""
	if rep.Fallbacks > 0 {
		s.fallbacks += rep.Fallbacks
		ls.log.Warn("lane requests served by base", "service", s.spec.Service, "count", rep.Fallbacks, "why", rep.Reason)
		if ls.onFall != nil {
			ls.onFall(protocol.LaneFallbackParams{SessionID: ls.id, Lane: ls.name, Service: s.spec.Service, Count: rep.Fallbacks, Reason: rep.Reason})
		}
	}
	return nil
}

// keep renews the routes; after a failure it sets the service up again
// (a new agent pod, a replaced or restored router).
func (ls *laneSession) keep() {
	t := time.NewTicker(laneRenew)
	defer t.Stop()
	for {
		select {
		case <-ls.ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range ls.services {
			ctx, cancel := context.WithTimeout(ls.ctx, 10*time.Second)
			err := ls.register(ctx, s)
			if err != nil && ls.ctx.Err() == nil {
				ls.mu.Lock()
				s.router = nil // look it up (or set it up) again
				ls.mu.Unlock()
				if err := ls.setup(ctx, s); err != nil && ls.ctx.Err() == nil {
					ls.log.Warn("lane: route not renewed", "service", s.spec.Service, "err", err)
				}
			}
			cancel()
		}
	}
}

// serve carries the router's streams to the local app; LaneReady goes
// first once the app accepted.
func (ls *laneSession) serve(s *laneService, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		ls.wg.Go(func() {
			if !s.conns.Add(c) {
				return
			}
			defer s.conns.Remove(c)
			d := net.Dialer{Timeout: 3 * time.Second}
			local, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.spec.LocalPort)))
			if err != nil {
				ls.log.Warn("lane: the local app does not accept connections", "port", s.spec.LocalPort, "err", err)
				c.Close()
				return
			}
			if _, err := c.Write([]byte(agentproto.LaneReady)); err != nil {
				c.Close()
				local.Close()
				return
			}
			channel.Splice(c, local)
		})
	}
}

// Stop removes the routes first, so that new tagged requests go to base,
// lets the requests in flight finish (up to 10 s), and restores each
// Service whose router has no route left.
func (ls *laneSession) Stop() {
	if ls == nil {
		return
	}
	ls.stopped.Do(func() {
		ls.cancel()
		ls.keepWG.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, s := range ls.services {
			ls.mu.Lock()
			r, ln := s.router, s.ln
			s.state = "stopped"
			ls.mu.Unlock()
			last := false
			if r != nil {
				st, err := r.Deregister(ctx, ls.hc, ls.name, ls.id)
				if err != nil {
					ls.log.Warn("lane: removing the route failed (it expires by itself)", "service", s.spec.Service, "err", err)
				} else {
					last = len(st.Routes) == 0
				}
			}
			if ln != nil {
				ln.Close()
			}
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			s.conns.Drain(dctx)
			cancel()
			if last {
				ls.log.Info("last lane of the Service stopped: restoring it", "service", s.spec.Service)
				if err := kubernetes.RestoreService(ctx, ls.cfg, s.spec.Service); err != nil {
					ls.log.Warn("lane: restoring the Service failed (tether clean retries)", "service", s.spec.Service, "err", err)
				}
			}
		}
		ls.wg.Wait()
	})
}

// Close is Stop (idempotent).
func (ls *laneSession) Close() { ls.Stop() }

// Status is the lane's state for interconnect/status.
func (ls *laneSession) Status() *protocol.LaneStatus {
	if ls == nil {
		return nil
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	st := &protocol.LaneStatus{Name: ls.name}
	for _, s := range ls.services {
		ss := protocol.LaneServiceStatus{Service: s.spec.Service, Port: s.spec.Port, LocalPort: s.spec.LocalPort,
			State: s.state, Fallbacks: s.fallbacks, Error: s.err}
		if s.router != nil {
			ss.Router = s.router.Namespace + "/" + s.router.Pod
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

// laneArgs are the JVM properties (java) or environment variables that keep
// a lane app out of the shared registries' default pools: Dubbo's tag
// routing, a Nacos group, a Eureka application name of its own.
func laneArgs(lane string) (props, env map[string]string) {
	group := "tether-lane-" + lane
	props = map[string]string{
		"dubbo.provider.tag":                       lane,
		"spring.cloud.nacos.discovery.group":       group,
		"eureka.instance.appname":                  "${spring.application.name:app}-" + group,
		"eureka.instance.virtual-host-name":        "${spring.application.name:app}-" + group,
		"eureka.instance.secure-virtual-host-name": "${spring.application.name:app}-" + group,
	}
	env = map[string]string{
		"DUBBO_PROVIDER_TAG":                    lane,
		"SPRING_CLOUD_NACOS_DISCOVERY_GROUP":    group,
		"EUREKA_INSTANCE_APPNAME":               "${spring.application.name:app}-" + group,
		"EUREKA_INSTANCE_VIRTUALHOSTNAME":       "${spring.application.name:app}-" + group,
		"EUREKA_INSTANCE_SECUREVIRTUALHOSTNAME": "${spring.application.name:app}-" + group,
		"TETHER_LANE":                           lane,
	}
	return props, env
}
