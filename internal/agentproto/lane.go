package agentproto

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Lanes (docs/lanes.md): a request belongs to lane NAME when it carries the
// header `x-tether-lane: NAME`, or the W3C baggage member tether-lane=NAME.
const (
	LaneHeader     = "X-Tether-Lane"
	LaneBaggageKey = "tether-lane"
	// LaneServedHeader is added to the response of every request that
	// carried a lane: "lane" when the developer's app answered, "base" when
	// the Service's own pods did.
	LaneServedHeader = "X-Tether-Lane-Served"
	// LaneReady is what the laptop writes first on a lane stream once its
	// local app accepted the connection; the router writes nothing before
	// it has read these bytes, so a dead laptop falls back cleanly.
	LaneReady = "TLOK"
	// RouterTokenEnv holds the router's control token.
	RouterTokenEnv = "TETHER_ROUTER_TOKEN"
	// RouterTokenHeader carries the token where Authorization cannot.
	RouterTokenHeader = "X-Tether-Token"
)

// LaneOf returns the lane a request belongs to, "" for none. The header
// wins over baggage.
func LaneOf(h http.Header) string {
	if v := strings.TrimSpace(h.Get(LaneHeader)); v != "" {
		return v
	}
	for _, line := range h.Values("Baggage") {
		if v, ok := BaggageMember(line, LaneBaggageKey); ok {
			return v
		}
	}
	return ""
}

// BaggageMember finds key in a W3C baggage header value
// ("k1=v1;prop, k2=v2"); values are percent-decoded.
func BaggageMember(line, key string) (string, bool) {
	for _, m := range strings.Split(line, ",") {
		kv, _, _ := strings.Cut(m, ";")
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) != key {
			continue
		}
		v = strings.TrimSpace(v)
		if u, err := url.PathUnescape(v); err == nil {
			v = u
		}
		return v, v != ""
	}
	return "", false
}

// RouteOwner is the developer process that registered a route.
type RouteOwner struct {
	User  string `json:"user"`
	Host  string `json:"host"`
	PID   int    `json:"pid"`
	Start string `json:"start,omitempty"` // process start time (a reused PID is not the owner)
}

// Route sends a lane's requests to a developer's agent pod.
type Route struct {
	Lane    string     `json:"lane"`
	Target  string     `json:"target"` // host:port: the agent pod's reverse listener
	Session string     `json:"session"`
	Owner   RouteOwner `json:"owner"`
	Expires time.Time  `json:"expires"`
}

// RouteRequest is the body of PUT /v1/lanes/{lane}.
type RouteRequest struct {
	Target     string     `json:"target"`
	Session    string     `json:"session"`
	Owner      RouteOwner `json:"owner"`
	TTLSeconds int        `json:"ttlSeconds,omitempty"` // default: the router's TTL
}

// RouteReply answers PUT /v1/lanes/{lane}: the lane's requests that fell
// back to base since the previous registration.
type RouteReply struct {
	Fallbacks int64  `json:"fallbacks"`
	Reason    string `json:"reason,omitempty"`
	Served    int64  `json:"served"` // requests the route served, in total
}

// RouterStatus answers GET /v1/status.
type RouterStatus struct {
	Routes []Route `json:"routes"`
	// IdleSeconds: how long the router has had no route (0 while it has).
	IdleSeconds float64 `json:"idleSeconds"`
	// Expired: owners of routes that expired (no clean stop) since the
	// router last had none.
	Expired  []RouteOwner `json:"expired,omitempty"`
	Requests int64        `json:"requests"` // HTTP requests routed, in total
}
