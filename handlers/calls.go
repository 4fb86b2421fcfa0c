package handlers

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/tether-dev/tether/protocol"
)

func init() {
	register(protocol.MethodInterconnectCalls, Method{Handle: typed(interconnectCalls)})
	register(protocol.MethodInterconnectHAR, Method{Handle: typed(interconnectHAR)})
}

func interconnectCalls(ctx context.Context, env *Env, p *protocol.InterconnectCallsParams) (any, error) {
	if p.Limit < 0 {
		return nil, InvalidParams("limit", "must be 0 (all) or more")
	}
	return env.Launches.Calls(p.SessionID, p.Limit, p.Headers), nil
}

func interconnectHAR(ctx context.Context, env *Env, p *protocol.InterconnectHARParams) (any, error) {
	var b bytes.Buffer
	if err := env.Launches.WriteHAR(&b, p.SessionID, protocol.ProtocolVersion); err != nil {
		return nil, err
	}
	return json.RawMessage(bytes.TrimSpace(b.Bytes())), nil
}
