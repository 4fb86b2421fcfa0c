package protocol

// The run configurations and proxies of a workspace, as they are stored in
// tether.yaml and sent over the wire: the same field names in both.

// Proxy is a way into the cloud: an SSH proxy machine or a Kubernetes cluster.
type Proxy struct {
	Name       string           `json:"name" yaml:"name"`
	SSH        *SSHProxy        `json:"ssh,omitempty" yaml:"ssh,omitempty"`
	Kubernetes *KubernetesProxy `json:"kubernetes,omitempty" yaml:"kubernetes,omitempty"`
	Routes     *Routes          `json:"routes,omitempty" yaml:"routes,omitempty"`
}

// SSHProxy is a proxy machine reached over SSH.
type SSHProxy struct {
	Host                  string `json:"host" yaml:"host"`
	Port                  int    `json:"port,omitempty" yaml:"port,omitempty"`
	User                  string `json:"user,omitempty" yaml:"user,omitempty"`
	IdentityFile          string `json:"identityFile,omitempty" yaml:"identityFile,omitempty"`
	KnownHostsFile        string `json:"knownHostsFile,omitempty" yaml:"knownHostsFile,omitempty"`
	StrictHostKeyChecking string `json:"strictHostKeyChecking,omitempty" yaml:"strictHostKeyChecking,omitempty"`
	ProxyJump             string `json:"proxyJump,omitempty" yaml:"proxyJump,omitempty"`
	// AdvertiseAddress is the proxy machine's address as cloud callers reach
	// it (for expose); default: discovered on the proxy machine.
	AdvertiseAddress string `json:"advertiseAddress,omitempty" yaml:"advertiseAddress,omitempty"`
}

// KubernetesProxy is a cluster reached through its API server.
type KubernetesProxy struct {
	Kubeconfig string `json:"kubeconfig,omitempty" yaml:"kubeconfig,omitempty"`
	Context    string `json:"context,omitempty" yaml:"context,omitempty"`
	Namespace  string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Image      string `json:"image,omitempty" yaml:"image,omitempty"`
	// PortForward is the protocol tried first for port-forward connections:
	// "spdy" (default; fewer bytes of CPU per byte through the API server)
	// or "websocket"; the other is used when the API server refuses it.
	PortForward string `json:"portForward,omitempty" yaml:"portForward,omitempty"`
}

// Routes says which traffic goes through the tunnel; the rest is dialled
// directly from the laptop.
type Routes struct {
	CIDRs   []string `json:"cidrs,omitempty" yaml:"cidrs,omitempty"`
	Domains []string `json:"domains,omitempty" yaml:"domains,omitempty"`
}

// Run configuration types.
const (
	TypeJava        = "java"
	TypeExec        = "exec"
	TypeDocker      = "docker"
	TypeRemoteDebug = "remoteDebug"
)

// RunConfig is one thing the user runs or debugs. The section named after
// Type holds that type's settings; Env, Cwd, Interconnect and Debug are
// common to all types.
type RunConfig struct {
	Name         string             `json:"name" yaml:"name"`
	Type         string             `json:"type" yaml:"type"`
	Java         *JavaConfig        `json:"java,omitempty" yaml:"java,omitempty"`
	Exec         *ExecConfig        `json:"exec,omitempty" yaml:"exec,omitempty"`
	Docker       *DockerConfig      `json:"docker,omitempty" yaml:"docker,omitempty"`
	RemoteDebug  *RemoteDebugConfig `json:"remoteDebug,omitempty" yaml:"remoteDebug,omitempty"`
	Env          map[string]string  `json:"env,omitempty" yaml:"env,omitempty"`
	Cwd          string             `json:"cwd,omitempty" yaml:"cwd,omitempty"`
	Interconnect *Interconnect      `json:"interconnect,omitempty" yaml:"interconnect,omitempty"`
	Debug        *DebugSettings     `json:"debug,omitempty" yaml:"debug,omitempty"`
}

// JavaConfig starts a JVM: a main class on a classpath, or a jar.
type JavaConfig struct {
	MainClass string   `json:"mainClass,omitempty" yaml:"mainClass,omitempty"`
	Jar       string   `json:"jar,omitempty" yaml:"jar,omitempty"`
	Classpath []string `json:"classpath,omitempty" yaml:"classpath,omitempty"`
	VMArgs    []string `json:"vmArgs,omitempty" yaml:"vmArgs,omitempty"`
	Args      []string `json:"args,omitempty" yaml:"args,omitempty"`
	JavaHome  string   `json:"javaHome,omitempty" yaml:"javaHome,omitempty"`
	// Agent: with interconnect on, Tether's Java agent redirects every
	// connect (NIO, HttpClient, Netty, async) and resolves private names on
	// the far side. Default true; false falls back to SOCKS JVM arguments
	// (blocking sockets only).
	Agent *bool `json:"agent,omitempty" yaml:"agent,omitempty"`
}

// ExecConfig starts any command; it reaches the cloud through proxy
// environment variables.
type ExecConfig struct {
	Command []string `json:"command" yaml:"command"`
}

// DockerConfig runs the app in a local container.
type DockerConfig struct {
	Image   string            `json:"image" yaml:"image"`
	Command []string          `json:"command,omitempty" yaml:"command,omitempty"`
	Args    []string          `json:"args,omitempty" yaml:"args,omitempty"`
	Env     map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	Ports   []string          `json:"ports,omitempty" yaml:"ports,omitempty"`
	Volumes []string          `json:"volumes,omitempty" yaml:"volumes,omitempty"`
	Workdir string            `json:"workdir,omitempty" yaml:"workdir,omitempty"`
	User    string            `json:"user,omitempty" yaml:"user,omitempty"`
}

// RemoteDebugConfig forwards a debug port inside the private network to a
// loopback port.
type RemoteDebugConfig struct {
	Proxy     string `json:"proxy" yaml:"proxy"`
	Host      string `json:"host" yaml:"host"`
	Port      int    `json:"port" yaml:"port"`
	LocalPort int    `json:"localPort,omitempty" yaml:"localPort,omitempty"`
}

// Interconnect is the IDE toggle: whether the app reaches the cloud, and
// through which proxy.
type Interconnect struct {
	Enabled bool   `json:"enabled" yaml:"enabled"`
	Proxy   string `json:"proxy,omitempty" yaml:"proxy,omitempty"`
	// Expose makes local ports reachable from the cloud (cloud -> local).
	Expose []Expose `json:"expose,omitempty" yaml:"expose,omitempty"`
	// Lane routes requests tagged with the lane name to this app instead of
	// the cluster's pods (kubernetes proxies; docs/lanes.md).
	Lane *Lane `json:"lane,omitempty" yaml:"lane,omitempty"`
}

// Lane is a joint-debugging lane in a shared cluster: requests to the
// listed Services that carry `x-tether-lane: <name>` (or the W3C baggage
// member tether-lane=<name>) reach the local app; all others reach the
// Service's own pods.
type Lane struct {
	Name     string        `json:"name" yaml:"name"`
	Services []LaneService `json:"services" yaml:"services"`
}

// LaneService is one Service of a lane: tagged requests to its Port reach
// the local app on LocalPort.
type LaneService struct {
	Service   string `json:"service" yaml:"service"`
	Port      int    `json:"port" yaml:"port"`
	LocalPort int    `json:"localPort" yaml:"localPort"`
}

// Registries whose address Tether can inject for an exposed port.
const (
	RegistryNacos  = "nacos"  // Spring Cloud Alibaba Nacos discovery
	RegistryEureka = "eureka" // Spring Cloud Netflix Eureka
	RegistryConsul = "consul" // Spring Cloud Consul discovery
	RegistryDubbo  = "dubbo"  // Apache Dubbo (any registry)
)

// Expose is a local port that cloud callers reach on the proxy side.
type Expose struct {
	LocalPort int `json:"localPort" yaml:"localPort"`
	// RemotePort on the proxy side; 0 = any free port.
	RemotePort int `json:"remotePort,omitempty" yaml:"remotePort,omitempty"`
	// Registry: nacos, eureka, consul or dubbo — the app registers the
	// proxy-side address instead of the laptop's.
	Registry string `json:"registry,omitempty" yaml:"registry,omitempty"`
}

// DebugSettings tune how a debuggee is started.
type DebugSettings struct {
	// Port is the local debug port; 0 picks a free one.
	Port int `json:"port,omitempty" yaml:"port,omitempty"`
	// Suspend makes the JVM wait for the debugger before running main.
	Suspend bool `json:"suspend,omitempty" yaml:"suspend,omitempty"`
}
