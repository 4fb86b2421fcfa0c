#!/usr/bin/env bash
# Installs what `make test` needs on a fresh Debian 12 machine. Under CI=true
# a prerequisite that cannot be installed is a failure, never a skip.
set -euo pipefail

need_pkgs=()
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
command -v ssh >/dev/null || need_pkgs+=(openssh-client)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need_pkgs+=(dnsmasq-base)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v javac >/dev/null || need_pkgs+=(openjdk-17-jdk-headless)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	echo "deps: installing ${need_pkgs[*]}"
	if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"; } >/tmp/tether-apt.log 2>&1; then
		cat /tmp/tether-apt.log >&2
		echo "deps: could not install ${need_pkgs[*]}" >&2
		[ "${CI:-}" = true ] && exit 1
	fi
fi

GOBIN=$(go env GOPATH)/bin
if [ ! -x "$GOBIN/staticcheck" ]; then
	echo "deps: installing staticcheck"
	go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
command -v dlv >/dev/null || [ -x "$GOBIN/dlv" ] || { echo "deps: installing dlv"; go install github.com/go-delve/delve/cmd/dlv@v1.27.2; }

# Docker mode: the engine, and the JDK image its tests run Java in (built
# with debootstrap, cached under ${TETHER_CACHE:-/var/cache/tether}).
"$(dirname "$0")/docker.sh"
if docker info >/dev/null 2>&1; then
	"$(dirname "$0")/jdk-image.sh" tether-test/jdk17:latest
fi

# Kubernetes: the testbed's binaries (kube-*, kubectl, CoreDNS, pause), built
# from their Go modules and cached under ${TETHER_CACHE:-/var/cache/tether}
# (~15-20 min cold on 2 cores, instant when cached). Built here rather than
# inside `go test` so the tests' timeout is not spent on compiling.
if docker info >/dev/null 2>&1; then
	echo "deps: Kubernetes testbed binaries (cached after the first build)"
	"$(dirname "$0")/k8s/build.sh"
fi
