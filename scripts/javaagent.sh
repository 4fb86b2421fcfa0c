#!/bin/sh
# Builds the Tether Java agent jar with javac and jar only (no Maven/Gradle):
#   agent and hook classes at the Java 8 API level (javac --release 8),
#   the JDK 9+ trampoline definer with --release 9,
#   the JDK 18+ InetAddressResolverProvider with --release 18 (needs a JDK >= 18;
#   without one the jar is built without it and the agent patches the JDK's
#   name-service method instead).
# Usage: scripts/javaagent.sh [OUTPUT_JAR]   (default javaagent/dist/tether-javaagent.jar)
# JAVAC8 / JAVAC18 / JAR override the tools.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/javaagent/java"
out=${1:-"$root/javaagent/dist/tether-javaagent.jar"}

version_of() { "$1" -version 2>&1 | sed -n 's/^javac \([0-9]*\).*/\1/p'; }

JAVAC8=${JAVAC8:-javac}
JAR=${JAR:-jar}
if [ -z "${JAVAC18:-}" ]; then
	for c in "$(command -v javac || true)" /usr/lib/jvm/*/bin/javac; do
		[ -x "$c" ] || continue
		v=$(version_of "$c")
		if [ -n "$v" ] && [ "$v" -ge 18 ]; then JAVAC18=$c; break; fi
	done
fi
command -v "$JAVAC8" >/dev/null || { echo "javaagent.sh: javac not found" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/classes"
# shellcheck disable=SC2046
"$JAVAC8" -nowarn -Xlint:-options --release 8 -d "$tmp/classes" $(find "$src/src" -name '*.java')
# JDK 9+ only (Module, Lookup.defineClass): defines the hook trampoline in java.base.
# shellcheck disable=SC2046
"$JAVAC8" -nowarn -Xlint:-options --release 9 -d "$tmp/classes" $(find "$src/src9" -name '*.java')
mkdir -p "$tmp/classes/META-INF/services"
if [ -n "${JAVAC18:-}" ]; then
	# shellcheck disable=SC2046
	"$JAVAC18" -nowarn -Xlint:-options --release 18 -cp "$tmp/classes" -d "$tmp/classes" $(find "$src/src18" -name '*.java')
	echo dev.tether.agent.jdk18.ResolverProvider >"$tmp/classes/META-INF/services/java.net.spi.InetAddressResolverProvider"
else
	echo "javaagent.sh: no JDK >= 18 found; building without the resolver provider" >&2
fi
cat >"$tmp/manifest" <<MF
Premain-Class: dev.tether.agent.Premain
Agent-Class: dev.tether.agent.Premain
Can-Retransform-Classes: true
Can-Redefine-Classes: false
Implementation-Title: tether-javaagent
MF
mkdir -p "$(dirname "$out")"
# A fixed date makes the jar reproducible (jar >= 17 knows --date).
if "$JAR" --help 2>&1 | grep -q -- '--date'; then date="--date=2024-01-01T00:00:00Z"; else date=""; fi
"$JAR" --create $date --file "$out.tmp" --manifest "$tmp/manifest" -C "$tmp/classes" .
mv "$out.tmp" "$out"
echo "javaagent.sh: built $out" >&2
