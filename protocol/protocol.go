// Package protocol holds the wire contract between IDE plugins and the Tether
// backend: JSON-RPC 2.0 method names, their params and results, and the
// error codes. It imports nothing of Tether's; see docs/protocol.md for one
// example exchange per method.
package protocol

import "encoding/json"

// ProtocolVersion is the version of this contract. It changes in its major
// part when a method or field changes incompatibly; plugins check it in the
// initialize result.
const ProtocolVersion = "1.0"

// Method names, grouped as in DESIGN.md.
const (
	MethodInitialize    = "initialize"
	MethodInitialized   = "initialized"
	MethodShutdown      = "shutdown"
	MethodExit          = "exit"
	MethodCancelRequest = "$/cancelRequest"
	MethodProgress      = "$/progress"

	MethodLogMessage         = "window/logMessage"
	MethodShowMessageRequest = "window/showMessageRequest"
	// MethodShowInputRequest asks the user to type an answer (an SSH
	// password, a key passphrase, a keyboard-interactive challenge). Not in
	// LSP; named after window/showMessageRequest.
	MethodShowInputRequest = "window/showInputRequest"

	MethodProxyList   = "proxy/list"
	MethodProxySave   = "proxy/save"
	MethodProxyDelete = "proxy/delete"
	MethodProxyTest   = "proxy/test"

	MethodRunConfigList     = "runConfig/list"
	MethodRunConfigGet      = "runConfig/get"
	MethodRunConfigSave     = "runConfig/save"
	MethodRunConfigDelete   = "runConfig/delete"
	MethodRunConfigValidate = "runConfig/validate"

	MethodInterconnectSet    = "interconnect/set"
	MethodInterconnectStatus = "interconnect/status" // request, and notification on every tunnel state change
	// MethodInterconnectConnection is a notification for each connection
	// that went through the channel: the connection log.
	MethodInterconnectConnection = "interconnect/connection"
	// MethodInterconnectLaneFallback is a notification: requests tagged
	// with the session's lane were served by the Service's own pods.
	MethodInterconnectLaneFallback = "interconnect/laneFallback"

	MethodLaunchPrepare = "launch/prepare"
	MethodLaunchRelease = "launch/release"
	MethodLaunchStart   = "launch/start"
	MethodLaunchStop    = "launch/stop"
	MethodLaunchOutput  = "launch/output" // notification
	MethodLaunchState   = "launch/state"  // notification

	MethodKubernetesContexts   = "kubernetes/contexts"
	MethodKubernetesNamespaces = "kubernetes/namespaces"

	MethodDebugForward   = "debug/forward"
	MethodDebugUnforward = "debug/unforward"
	// MethodDebugDAPServer hands out a loopback DAP endpoint for IDEs that
	// prefer a socket to `tether dap` on stdio.
	MethodDebugDAPServer = "debug/dapServer"
)

// Error codes. The standard JSON-RPC and LSP codes, then Tether's own
// application codes (positive, outside the reserved range). The code says
// what failed; ErrorData.Category says who can fix it. -32603 is only ever
// a bug in Tether (category "bug").
const (
	CodeParseError           = -32700 // the message is not JSON
	CodeInvalidRequest       = -32600 // not a JSON-RPC request, or over the size limit
	CodeMethodNotFound       = -32601
	CodeInvalidParams        = -32602 // a param (user) or the configuration a request uses (config); message names the field, data.problems for configs
	CodeInternalError        = -32603 // a bug in Tether, and nothing else: data.category is "bug"
	CodeServerNotInitialized = -32002 // a request before initialize
	CodeRequestCancelled     = -32800 // $/cancelRequest, or the client went away

	CodeNotFound         = 1001 // no run configuration / proxy / session with that name or id
	CodeConflict         = 1002 // the workspace file changed since the revision sent
	CodeWorkspaceInvalid = 1003 // tether.yaml cannot be read: data.problems / message say where
	CodeUnauthorized     = 1004 // the token in initializationOptions is missing or wrong
	CodeInvalidState     = 1005 // e.g. a second initialize, or a request after shutdown
	CodeNotSupported     = 1006 // valid, but this build cannot do it
	CodeLaunchFailed     = 2001 // the tunnel or the app could not be started: the message says why, data.category who can fix it
	// CodeEnvironment: another request failed for a reason outside Tether
	// and the request (a file that cannot be written, a port that cannot
	// be opened, the cluster); data.category is "environment".
	CodeEnvironment = 2002

	// CodeServerBusy: tether serve --listen already serves its maximum of
	// clients; the connection is closed after this reply (id null).
	CodeServerBusy = 1008
)

// ErrorData is the data member of Tether's error replies.
type ErrorData struct {
	// Category says who can fix it: "user" (the request), "config" (the
	// workspace file or settings), "environment" (network, remote machine,
	// missing tool) or "bug" (see the logs and report it).
	Category string `json:"category"`
	// Problems lists field problems for invalid configurations.
	Problems []Problem `json:"problems,omitempty"`
}

// Problem is one thing wrong with a configuration, a proxy or the file.
type Problem struct {
	// Path names the field, e.g. configurations[2].java.mainClass; it is
	// relative to the object sent for runConfig/validate and saves.
	Path string `json:"path"`
	// Message says what is wrong and, where it helps, what to do.
	Message string `json:"message"`
	// Line is the line in tether.yaml, for problems read from the file.
	Line int `json:"line,omitempty"`
}

// WorkDoneProgressParams is embedded by requests that may report progress:
// when the client sends a token, the backend sends $/progress for it.
type WorkDoneProgressParams struct {
	WorkDoneToken any `json:"workDoneToken,omitempty"` // string or integer
}

// InitializeParams (initialize). Unknown LSP fields are ignored.
type InitializeParams struct {
	WorkDoneProgressParams
	// ProcessID is the IDE's process; the backend exits when it is gone.
	ProcessID *int `json:"processId,omitempty"`
	// The workspace, as LSP clients send it; the first of WorkspaceFolders,
	// RootURI, RootPath that is set wins. `tether serve --workspace`
	// overrides all three.
	RootURI          string            `json:"rootUri,omitempty"`
	RootPath         string            `json:"rootPath,omitempty"`
	WorkspaceFolders []WorkspaceFolder `json:"workspaceFolders,omitempty"`
	ClientInfo       *ClientInfo       `json:"clientInfo,omitempty"`
	// InitializationOptions carries the token that TCP clients must present.
	InitializationOptions *InitializationOptions `json:"initializationOptions,omitempty"`
}

// WorkspaceFolder is an LSP workspace folder.
type WorkspaceFolder struct {
	URI  string `json:"uri"`
	Name string `json:"name,omitempty"`
}

// ClientInfo names the IDE plugin.
type ClientInfo struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// InitializationOptions are Tether's own initialize options.
type InitializationOptions struct {
	// Token authenticates clients of `tether serve --listen tcp:...`; it is
	// read from the token file the server wrote.
	Token string `json:"token,omitempty"`
}

// InitializeResult (initialize).
type InitializeResult struct {
	ServerInfo      ServerInfo         `json:"serverInfo"`
	ProtocolVersion string             `json:"protocolVersion"`
	Capabilities    ServerCapabilities `json:"capabilities"`
}

// ServerInfo names the backend.
type ServerInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// ServerCapabilities says what this backend can do.
type ServerCapabilities struct {
	// Workspace is the absolute workspace directory in use.
	Workspace string `json:"workspace"`
	// Methods lists the request and notification names this build answers.
	Methods []string `json:"methods"`
	// RunConfigTypes lists the run configuration types this build can launch.
	RunConfigTypes []string `json:"runConfigTypes"`
	// ProxyKinds lists the proxy kinds this build can connect through.
	ProxyKinds []string `json:"proxyKinds"`
	// MaxMessageBytes is the largest message the backend accepts.
	MaxMessageBytes int `json:"maxMessageBytes"`
}

// CancelParams ($/cancelRequest).
type CancelParams struct {
	ID json.RawMessage `json:"id"` // the request's id: integer or string
}

// ProgressParams ($/progress, server to client).
type ProgressParams struct {
	Token any              `json:"token"`
	Value WorkDoneProgress `json:"value"`
}

// WorkDoneProgress is the value of a $/progress notification.
type WorkDoneProgress struct {
	Kind       string `json:"kind"` // begin, report, end
	Title      string `json:"title,omitempty"`
	Message    string `json:"message,omitempty"`
	Percentage *int   `json:"percentage,omitempty"`
}

// Message types for window/logMessage and window/showMessageRequest.
const (
	MessageError   = 1
	MessageWarning = 2
	MessageInfo    = 3
	MessageLog     = 4
)

// LogMessageParams (window/logMessage, server to client).
type LogMessageParams struct {
	Type    int    `json:"type"`
	Message string `json:"message"`
}

// ShowMessageRequestParams (window/showMessageRequest, server to client):
// a question for the user, e.g. whether to trust an unknown host key.
type ShowMessageRequestParams struct {
	Type    int                 `json:"type"`
	Message string              `json:"message"`
	Actions []MessageActionItem `json:"actions,omitempty"`
}

// MessageActionItem is one answer; the client replies with the chosen one
// or null.
type MessageActionItem struct {
	Title string `json:"title"`
}

// ShowInputRequestParams (window/showInputRequest, server to client). The
// client replies {"value": "..."}, or null when the user cancels.
type ShowInputRequestParams struct {
	Message string `json:"message"`
	// Secret: hide what is typed (passwords, passphrases).
	Secret bool `json:"secret"`
}

// ShowInputResult is the reply to window/showInputRequest.
type ShowInputResult struct {
	Value string `json:"value"`
}
