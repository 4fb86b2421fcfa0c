// Package workspace loads, validates and saves the workspace file
// (tether.yaml): the proxies and run configurations of one project.
//
// Its errors carry their category (internal/errcat): a file that cannot be
// parsed or validated (SyntaxError, FileError, Problems) is a config error;
// ErrNotFound and ErrConflict are user errors; a file that cannot be read or
// written is an environment error.
package workspace

import "github.com/tether-dev/tether/protocol"

// FileName is the workspace file at the workspace root.
const FileName = "tether.yaml"

// CurrentVersion is the only file format version this build understands.
const CurrentVersion = 1

// The stored types are the wire types.
type (
	Proxy             = protocol.Proxy
	SSHProxy          = protocol.SSHProxy
	KubernetesProxy   = protocol.KubernetesProxy
	Routes            = protocol.Routes
	RunConfig         = protocol.RunConfig
	JavaConfig        = protocol.JavaConfig
	ExecConfig        = protocol.ExecConfig
	DockerConfig      = protocol.DockerConfig
	RemoteDebugConfig = protocol.RemoteDebugConfig
	Interconnect      = protocol.Interconnect
	Expose            = protocol.Expose
	Lane              = protocol.Lane
	LaneService       = protocol.LaneService
	DebugSettings     = protocol.DebugSettings
	Problem           = protocol.Problem
)

const (
	TypeJava        = protocol.TypeJava
	TypeExec        = protocol.TypeExec
	TypeDocker      = protocol.TypeDocker
	TypeRemoteDebug = protocol.TypeRemoteDebug
)

// File is the content of tether.yaml.
type File struct {
	Version        int         `json:"version" yaml:"version"`
	Proxies        []Proxy     `json:"proxies,omitempty" yaml:"proxies,omitempty"`
	Configurations []RunConfig `json:"configurations,omitempty" yaml:"configurations,omitempty"`
}

// Proxy returns the proxy with the given name.
func (f *File) Proxy(name string) (*Proxy, bool) {
	for i := range f.Proxies {
		if f.Proxies[i].Name == name {
			return &f.Proxies[i], true
		}
	}
	return nil, false
}

// Config returns the run configuration with the given name.
func (f *File) Config(name string) (*RunConfig, bool) {
	for i := range f.Configurations {
		if f.Configurations[i].Name == name {
			return &f.Configurations[i], true
		}
	}
	return nil, false
}
