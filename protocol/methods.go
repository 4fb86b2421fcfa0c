package protocol

import "encoding/json"

// Workspace edits carry an optional Revision: the revision the client last
// read (from a list result). If the file changed since, the save fails with
// CodeConflict instead of overwriting someone else's change. Without a
// revision the edit applies to the current file (other entries are kept).

// RunConfigListParams (runConfig/list).
type RunConfigListParams struct{}

// RunConfigListResult (runConfig/list).
type RunConfigListResult struct {
	Configs  []RunConfig `json:"configs"`
	Revision string      `json:"revision"`
	// Problems of the file as it is on disk (hand edits), with lines.
	Problems []Problem `json:"problems,omitempty"`
}

// RunConfigGetParams (runConfig/get); the result is the RunConfig.
type RunConfigGetParams struct {
	Name string `json:"name"`
}

// RunConfigSaveParams (runConfig/save) adds or replaces a configuration by
// name. Config is a RunConfig; an invalid one is refused with
// CodeInvalidParams and data.problems.
type RunConfigSaveParams struct {
	Config   json.RawMessage `json:"config"`
	Revision string          `json:"revision,omitempty"`
}

// SaveResult is the result of every workspace edit.
type SaveResult struct {
	Revision string `json:"revision"` // the file's new revision
}

// RunConfigDeleteParams (runConfig/delete).
type RunConfigDeleteParams struct {
	Name     string `json:"name"`
	Revision string `json:"revision,omitempty"`
}

// RunConfigValidateParams (runConfig/validate). Config is a RunConfig.
type RunConfigValidateParams struct {
	Config json.RawMessage `json:"config"`
}

// ValidateResult (runConfig/validate): empty problems means valid.
type ValidateResult struct {
	Problems []Problem `json:"problems"`
}

// ProxyListParams (proxy/list).
type ProxyListParams struct{}

// ProxyListResult (proxy/list).
type ProxyListResult struct {
	Proxies  []Proxy   `json:"proxies"`
	Revision string    `json:"revision"`
	Problems []Problem `json:"problems,omitempty"`
}

// ProxySaveParams (proxy/save). Proxy is a Proxy.
type ProxySaveParams struct {
	Proxy    json.RawMessage `json:"proxy"`
	Revision string          `json:"revision,omitempty"`
}

// ProxyDeleteParams (proxy/delete). A proxy that a run configuration uses
// is not deleted (CodeInvalidParams naming the configurations).
type ProxyDeleteParams struct {
	Name     string `json:"name"`
	Revision string `json:"revision,omitempty"`
}

// ProxyTestParams (proxy/test).
type ProxyTestParams struct {
	WorkDoneProgressParams
	Name string `json:"name"`
	// Target is host:port for the test dial; default: the proxy machine's
	// own SSH address as seen from itself.
	Target string `json:"target,omitempty"`
}

// ProxyTestResult (proxy/test): the steps in order; the first failing one
// says what is wrong.
type ProxyTestResult struct {
	OK    bool       `json:"ok"`
	Steps []TestStep `json:"steps"`
}

// TestStep is one step of a connectivity check.
type TestStep struct {
	Name       string `json:"name"` // tcp, hostKey, auth, dial
	OK         bool   `json:"ok"`
	Message    string `json:"message"`
	DurationMs int64  `json:"durationMs"`
}

// InterconnectSetParams (interconnect/set): the IDE toggle. It is saved in
// the run configuration; Proxy, when set, also changes the proxy used.
type InterconnectSetParams struct {
	Config   string `json:"config"`
	Enabled  bool   `json:"enabled"`
	Proxy    string `json:"proxy,omitempty"`
	Revision string `json:"revision,omitempty"`
}

// InterconnectStatusParams (interconnect/status).
type InterconnectStatusParams struct{}

// InterconnectStatusResult lists the open tunnels of this backend.
type InterconnectStatusResult struct {
	Tunnels []TunnelStatus `json:"tunnels"`
	// DAPSessions lists the debuggers connected to this client's DAP
	// endpoint (debug/dapServer); [] when none.
	DAPSessions []DAPSessionStatus `json:"dapSessions"`
}

// DAPSessionStatus is one DAP session on a client's DAP endpoint
// (debug/dapServer): a debugger connected to it.
type DAPSessionStatus struct {
	SessionID string `json:"sessionId"` // "d-" and 12 hex digits
	Peer      string `json:"peer"`      // the debugger's loopback address
	Since     string `json:"since"`     // RFC 3339
}

// TunnelStatus is one tunnel's health. It is also the params of the
// interconnect/status notification sent on every state change.
type TunnelStatus struct {
	SessionID string `json:"sessionId,omitempty"`
	Proxy     string `json:"proxy"`
	// State: connecting, connected, reconnecting, closed.
	State string `json:"state"`
	Since string `json:"since"` // RFC 3339
	Error string `json:"error,omitempty"`
	// Lane is the session's lane, when its configuration has one.
	Lane *LaneStatus `json:"lane,omitempty"`
}

// LaunchPrepareParams (launch/prepare): for IDEs that start the process
// themselves.
type LaunchPrepareParams struct {
	WorkDoneProgressParams
	Config string `json:"config"`
	Debug  bool   `json:"debug,omitempty"`
}

// LaunchPrepareResult is what the IDE adds to the process it starts. The
// session (tunnel, channel) lives until launch/release or until the client
// disconnects.
type LaunchPrepareResult struct {
	SessionID string            `json:"sessionId"`
	VMArgs    []string          `json:"vmArgs,omitempty"` // java: prepend to the JVM arguments
	Env       map[string]string `json:"env,omitempty"`    // add to the environment
	// DebugAddress is where the debugger attaches when debug was asked.
	DebugAddress string `json:"debugAddress,omitempty"`
	// Exposed lists the local ports reachable from the cloud, and where.
	Exposed []ExposedPort `json:"exposed,omitempty"`
}

// ExposedPort is a local port that cloud callers reach at Address.
type ExposedPort struct {
	LocalPort int    `json:"localPort"`
	Address   string `json:"address"` // proxy-side host:port that cloud callers use
	Registry  string `json:"registry,omitempty"`
}

// LaunchReleaseParams (launch/release).
type LaunchReleaseParams struct {
	SessionID string `json:"sessionId"`
}

// LaunchStartParams (launch/start): the backend starts the app.
type LaunchStartParams struct {
	WorkDoneProgressParams
	Config string `json:"config"`
	Debug  bool   `json:"debug,omitempty"`
}

// LaunchStartResult (launch/start).
type LaunchStartResult struct {
	LaunchID string `json:"launchId"`
}

// LaunchStopParams (launch/stop).
type LaunchStopParams struct {
	LaunchID string `json:"launchId"`
}

// LaunchOutputParams (launch/output notification): app output as it comes.
type LaunchOutputParams struct {
	LaunchID string `json:"launchId"`
	Stream   string `json:"stream"` // stdout or stderr
	Text     string `json:"text"`
}

// Launch states.
const (
	StateStarting   = "starting"
	StateConnecting = "connecting"
	StateRunning    = "running"
	StateDebugReady = "debugReady"
	StateExited     = "exited"
	StateFailed     = "failed"
)

// LaunchStateParams (launch/state notification).
type LaunchStateParams struct {
	LaunchID     string `json:"launchId"`
	State        string `json:"state"`
	DebugAddress string `json:"debugAddress,omitempty"` // debugReady
	ExitCode     *int   `json:"exitCode,omitempty"`     // exited
	Message      string `json:"message,omitempty"`      // failed: what went wrong and what to do
	// Exposed (running): the local ports reachable from the cloud, and where.
	Exposed []ExposedPort `json:"exposed,omitempty"`
}

// DebugForwardParams (debug/forward): a loopback port forwarded through the
// proxy to host:port in the private network.
type DebugForwardParams struct {
	WorkDoneProgressParams
	Proxy string `json:"proxy"`
	Host  string `json:"host"`
	Port  int    `json:"port"`
}

// DebugForwardResult (debug/forward).
type DebugForwardResult struct {
	LocalAddress string `json:"localAddress"`
	ForwardID    string `json:"forwardId"`
}

// DebugUnforwardParams (debug/unforward).
type DebugUnforwardParams struct {
	ForwardID string `json:"forwardId"`
}

// ConnectionRecord (interconnect/connection notification): one connection
// of the app, when it ends or fails.
type ConnectionRecord struct {
	SessionID  string `json:"sessionId"` // the launch or prepared session
	Target     string `json:"target"`    // host:port as the app asked
	Route      string `json:"route"`     // tunnel or direct
	Sent       int64  `json:"sent"`      // bytes app -> target
	Received   int64  `json:"received"`  // bytes target -> app
	DurationMs int64  `json:"durationMs"`
	// Error explains a failure: "10.10.0.7:3306 refused by the proxy
	// machine", "db.vpc.internal: no such host on the proxy machine".
	Error string `json:"error,omitempty"`
}

// DAPServerParams (debug/dapServer): none.
type DAPServerParams struct{}

// DAPServerResult (debug/dapServer): the loopback address of this client's
// DAP endpoint (one per client, closed when it disconnects; same-user
// peers only). Every connection to it is one DAP session, as `tether dap`
// on stdio: attach with {proxy, target, substitutePath, ...}.
type DAPServerResult struct {
	Address string `json:"address"`
}

// KubernetesContextsParams (kubernetes/contexts): for the IDE's picker.
type KubernetesContextsParams struct {
	Kubeconfig string `json:"kubeconfig,omitempty"` // default: $KUBECONFIG, else ~/.kube/config
}

// KubernetesContextsResult (kubernetes/contexts).
type KubernetesContextsResult struct {
	Contexts []string `json:"contexts"`
	Current  string   `json:"current"`
}

// KubernetesNamespacesParams (kubernetes/namespaces): for the IDE's picker.
type KubernetesNamespacesParams struct {
	WorkDoneProgressParams
	Kubeconfig string `json:"kubeconfig,omitempty"`
	Context    string `json:"context,omitempty"`
}

// KubernetesNamespacesResult (kubernetes/namespaces): the namespaces the
// user can list (or only the context's, when listing is forbidden).
type KubernetesNamespacesResult struct {
	Namespaces []string `json:"namespaces"`
}

// LaneStatus is the state of a session's lane (docs/lanes.md).
type LaneStatus struct {
	Name     string              `json:"name"`
	Services []LaneServiceStatus `json:"services"`
}

// LaneServiceStatus is one Service of a lane.
type LaneServiceStatus struct {
	Service   string `json:"service"`
	Port      int    `json:"port"`
	LocalPort int    `json:"localPort"`
	// State: starting (router being set up), active (tagged requests reach
	// the local app), retrying (the router is unreachable), stopped.
	State     string `json:"state"`
	Router    string `json:"router,omitempty"` // the router pod, namespace/name
	Fallbacks int64  `json:"fallbacks"`        // tagged requests served by the base pods
	Error     string `json:"error,omitempty"`
}

// LaneFallbackParams (interconnect/laneFallback notification): requests
// tagged with the session's lane were served by the Service's own pods
// because the local app could not be reached.
type LaneFallbackParams struct {
	SessionID string `json:"sessionId"`
	Lane      string `json:"lane"`
	Service   string `json:"service"`
	Count     int64  `json:"count"`  // since the last notification
	Reason    string `json:"reason"` // the last failure
}
