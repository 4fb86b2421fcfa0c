// Package agentproto is the contract between the tether backend (the
// laptop) and tether-agent (the cloud side): the agent's version and image,
// the pod's arguments and environment, the Docker-mode sidecar's arguments,
// environment and ready line, and the data-port handshake of the Kubernetes
// transport. Both binaries import it; it imports nothing cloud-only, so the
// backend does not link the agent (nftables, DNS server).
package agentproto

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tether-dev/tether/internal/routes"
)

// Protocol is the version of this contract. The agent reports it in its
// ready line, in `tether-agent version` and in the data handshake; bump it
// when a change needs the other side to change too.
const Protocol = 1

// Version is the build version of the binaries (set with
// -ldflags "-X github.com/tether-dev/tether/internal/agentproto.Version=...",
// as the Makefile does); the agent image is tagged with it.
var Version = "dev"

// ImageRepository is the repository of the agent image (FROM scratch and
// the static tether-agent; images/agent/Dockerfile).
const ImageRepository = "tether/agent"

var badTag = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// ImageTag makes a version a valid image tag.
func ImageTag(version string) string {
	t := strings.TrimLeft(badTag.ReplaceAllString(version, "_"), ".-")
	if len(t) > 128 {
		t = t[:128]
	}
	if t == "" {
		return "dev"
	}
	return t
}

// Image is the agent image of this build: ImageRepository:ImageTag(Version).
func Image() string { return ImageRepository + ":" + ImageTag(Version) }

// Describe is the agent's self-description: "VERSION (protocol N)".
func Describe(version string) string {
	return fmt.Sprintf("%s (protocol %d)", version, Protocol)
}

// Kubernetes agent pod.
const (
	// SSHPort is the agent's SSH port in the pod (control: authentication,
	// reverse listeners, keepalive; and Dial when the data port is absent).
	SSHPort = 2222
	// DataPort is the agent's data port in the pod: bound to loopback
	// (reachable only through port-forward), every connection must pass
	// the data handshake with the token the agent hands out over SSH.
	DataPort = 2223

	// EnvAuthorizedKeys is the authorized_keys text of `tether-agent ssh`.
	EnvAuthorizedKeys = "TETHER_AGENT_AUTHORIZED_KEYS"
	// EnvHostKey is the host private key (PEM) of `tether-agent ssh`.
	EnvHostKey = "TETHER_AGENT_HOST_KEY"
)

// PodArgs are the agent container's arguments.
func PodArgs(idleExit time.Duration) []string {
	return []string{"ssh", "--listen", ":" + strconv.Itoa(SSHPort),
		"--data-listen", "127.0.0.1:" + strconv.Itoa(DataPort), "--idle-exit", idleExit.String()}
}

// Docker-mode sidecar.
const (
	// EnvSOCKSUser and EnvSOCKSPassword are the sidecar's upstream SOCKS5
	// credentials (never flags: flags show in `docker inspect`).
	EnvSOCKSUser     = "TETHER_SOCKS_USER"
	EnvSOCKSPassword = "TETHER_SOCKS_PASSWORD"
	// ReadyPrefix starts the line the sidecar prints on stdout once it is
	// ready (`tether-sidecar ready`, then the agent's description).
	ReadyPrefix = "tether-sidecar ready"
	// DefaultFakeCIDR is where the sidecar's fake addresses for names
	// under the routed domains come from (the same default as the Java
	// agent's).
	DefaultFakeCIDR = routes.DefaultFakeCIDR
)

// ReadyLine is the sidecar's ready line.
func ReadyLine() string { return ReadyPrefix + " " + Describe(Version) }

// SidecarArgs are the sidecar container's arguments for an upstream SOCKS5
// server and the routed DNS suffixes.
func SidecarArgs(upstream string, domains []string) []string {
	args := []string{"sidecar", "--upstream", upstream}
	if len(domains) > 0 {
		args = append(args, "--domains", strings.Join(domains, ","))
	}
	return args
}
