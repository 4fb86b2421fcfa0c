#!/usr/bin/env bash
# Builds a JDK image without any registry: a minimal Debian bookworm root file
# system with openjdk-17-jre-headless (debootstrap), imported with
# `docker import`. Cached twice: nothing is done when the image exists, and a
# tarball of the root file system is kept under ${TETHER_CACHE:-/var/cache/tether}
# so a missing image is re-imported in seconds instead of re-bootstrapped.
#
#   scripts/jdk-image.sh [NAME]     (default NAME: tether-test/jdk17:latest)
#
# Under CI=true any failure exits non-zero (it does anyway: this script has no
# skip mode, the caller decides).
set -euo pipefail

NAME=${1:-tether-test/jdk17:latest}
CACHE=${TETHER_CACHE:-/var/cache/tether}
TARBALL=$CACHE/jdk-image.tar
SUITE=bookworm

log() { echo "jdk-image: $*" >&2; }
die() { log "$*"; exit 1; }

[ -n "$NAME" ] || die "empty image name"
[ -n "$CACHE" ] || die "empty cache directory"

docker info >/dev/null 2>&1 || die "Docker daemon not answering: run scripts/docker.sh first"

if docker image inspect "$NAME" >/dev/null 2>&1; then
	log "$NAME already present"
	exit 0
fi

import_tarball() {
	# Accept both a `docker save` archive (docker load) and a root file system tarball (import).
	if tar -tf "$TARBALL" manifest.json >/dev/null 2>&1; then
		docker load -i "$TARBALL" >/dev/null && docker image inspect "$NAME" >/dev/null 2>&1
	else
		docker import -c 'CMD ["java","-version"]' "$TARBALL" "$NAME" >/dev/null
	fi
}

mkdir -p "$CACHE"
exec 9>"$CACHE/jdk-image.lock"
flock -w 900 9 || die "could not lock $CACHE/jdk-image.lock"
if docker image inspect "$NAME" >/dev/null 2>&1; then
	log "$NAME already present"
	exit 0
fi

if [ -s "$TARBALL" ]; then
	log "importing cached $TARBALL as $NAME"
	if import_tarball; then
		exit 0
	fi
	log "cached tarball unusable; rebuilding"
	rm -f "$TARBALL"
fi

# The Debian mirror apt uses (deb822 .sources first, then one-line .list files).
mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v suite="$SUITE" '
			function flush() {
				if (uris != "" && (" " suites " ") ~ (" " suite " ")) { split(uris, u, " "); print u[1]; found = 1; exit }
				uris = ""; suites = ""
			}
			/^[[:space:]]*$/ { flush(); next }
			/^URIs:/   { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
			/^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
			END { if (!found) flush() }
		' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v suite="$SUITE" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
				if ($(i+1) == suite) { print $i; exit }
			}' "$f"
	done
}
MIRROR=${TETHER_DEBIAN_MIRROR:-$(mirror | head -n 1)}
[ -n "$MIRROR" ] || die "no Debian $SUITE mirror found in /etc/apt/sources.list{,.d}; set TETHER_DEBIAN_MIRROR"

if ! command -v debootstrap >/dev/null 2>&1; then
	log "installing debootstrap"
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } >/tmp/tether-apt-debootstrap.log 2>&1 ||
		{ cat /tmp/tether-apt-debootstrap.log >&2; die "could not install debootstrap"; }
fi

WORK=$(mktemp -d "$CACHE/jdk-rootfs.XXXXXX")
[ -n "$WORK" ] && [ -d "$WORK" ] || die "mktemp failed"
cleanup() {
	# Only the directory we created, and only when it is ours (non-empty path under $CACHE).
	case "$WORK" in
	"$CACHE"/jdk-rootfs.*) rm -rf --one-file-system "$WORK" ;;
	esac
}
trap cleanup EXIT

log "debootstrap $SUITE from $MIRROR (takes ~2 min; log: $CACHE/debootstrap.log)"
ROOT=$WORK/root
if ! debootstrap --variant=minbase --include=openjdk-17-jre-headless "$SUITE" "$ROOT" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
	tail -n 30 "$CACHE/debootstrap.log" >&2
	die "debootstrap failed"
fi
# Slim down: apt caches and docs are not needed in a test image.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* \
	"$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*

log "packing root file system"
tar -C "$ROOT" --numeric-owner -cf "$WORK/rootfs.tar" .
mv -f "$WORK/rootfs.tar" "$TARBALL"
log "importing as $NAME"
import_tarball || die "docker import failed"
docker image inspect "$NAME" --format "jdk-image: $NAME {{.Id}} {{.Size}} bytes" >&2
