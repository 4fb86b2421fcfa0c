#!/usr/bin/env bash
# Builds the Kubernetes binaries of the testbed (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl) from the
# Go module k8s.io/kubernetes through a wrapper module that `replace`s each
# staging module by its published version, plus CoreDNS (from its Go module) and
# a tiny static pause binary. Results are cached under
#   ${TETHER_CACHE:-/var/cache/tether}/k8s-${K8S_VERSION}/bin
# and reused: a warm run only checks that the files are there.
# Cold on 2 cores: ~14 min for Kubernetes, ~3 min for CoreDNS.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.3}
CACHE=${TETHER_CACHE:-/var/cache/tether}
[ -n "$K8S_VERSION" ] && [ -n "$CACHE" ] || { echo "build.sh: empty settings" >&2; exit 2; }
DIR="$CACHE/k8s-$K8S_VERSION"
BIN="$DIR/bin"
mkdir -p "$BIN"

exec 9>"$DIR/build.lock"
flock 9

STAGING_VERSION="v0.${K8S_VERSION#v1.}"
BINS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"

missing=""
for b in $BINS; do [ -x "$BIN/$b" ] || missing="$missing $b"; done

export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
if [ -n "$missing" ]; then
	W="$DIR/wrapper"
	mkdir -p "$W"
	modfile=$(cd "$W" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
	{
		echo "module tether.local/k8sbuild"
		echo
		echo "go 1.24.0"
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		echo "replace ("
		grep -E '^\s*k8s\.io/[^ ]+ => \./staging/' "$modfile" |
			awk -v v="$STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
		echo ")"
	} >"$W/go.mod"
	cd "$W"
	rm -f tools.go
	[ -f main.go ] || printf 'package main\n\nfunc main() {}\n' >main.go
	major=${K8S_VERSION#v}; major=${major%%.*}
	minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
	LD="-s -w"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		LD="$LD -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
	done
	pkgs=""
	for b in $missing; do pkgs="$pkgs k8s.io/kubernetes/cmd/$b"; done
	echo "build.sh: building$missing"
	t0=$(date +%s)
	mkdir -p "$W/out"
	go build -trimpath -ldflags "$LD" -o "$W/out/" $pkgs
	for b in $missing; do mv "$W/out/$b" "$BIN/$b"; done
	echo "build.sh: kubernetes binaries took $(( $(date +%s) - t0 ))s"
fi

if [ ! -x "$BIN/coredns" ]; then
	C="$DIR/coredns-build"
	mkdir -p "$C"
	cd "$C"
	[ -f go.mod ] || go mod init tether.local/corednsbuild >/dev/null 2>&1
	echo "build.sh: building coredns $COREDNS_VERSION"
	t0=$(date +%s)
	GOFLAGS=-mod=mod go get "github.com/coredns/coredns@$COREDNS_VERSION" >/dev/null 2>&1 || go get "github.com/coredns/coredns@$COREDNS_VERSION"
	go build -trimpath -ldflags "-s -w" -o "$BIN/coredns.tmp" github.com/coredns/coredns
	mv "$BIN/coredns.tmp" "$BIN/coredns"
	echo "build.sh: coredns took $(( $(date +%s) - t0 ))s"
fi

if [ ! -x "$BIN/pause" ]; then
	P="$DIR/pause-build"
	mkdir -p "$P"
	cat >"$P/main.go" <<'GO'
// pause: the sandbox's PID 1. Waits for SIGINT/SIGTERM and reaps children.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 4)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range c {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
GO
	(cd "$P" && { [ -f go.mod ] || go mod init tether.local/pause >/dev/null 2>&1; } && go build -trimpath -ldflags "-s -w" -o "$BIN/pause" .)
fi
echo "build.sh: binaries ready in $BIN"
