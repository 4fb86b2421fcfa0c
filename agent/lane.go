package agent

import "github.com/tether-dev/tether/internal/agentproto"

// The lane contract lives in agentproto (shared with the laptop side,
// which must not link this package); these names keep the router's code short.
const (
	LaneHeader        = agentproto.LaneHeader
	LaneBaggageKey    = agentproto.LaneBaggageKey
	LaneServedHeader  = agentproto.LaneServedHeader
	LaneReady         = agentproto.LaneReady
	RouterTokenEnv    = agentproto.RouterTokenEnv
	RouterTokenHeader = agentproto.RouterTokenHeader
)

type (
	RouteOwner   = agentproto.RouteOwner
	Route        = agentproto.Route
	RouteRequest = agentproto.RouteRequest
	RouteReply   = agentproto.RouteReply
	RouterStatus = agentproto.RouterStatus
)

// LaneOf returns the lane a request belongs to, "" for none.
var LaneOf = agentproto.LaneOf
