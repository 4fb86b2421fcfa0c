#!/usr/bin/env bash
# Tests of the IntelliJ client core (plain Java, Debian gson + junit5) against
# the real `tether serve` and `tether-agent sandbox`. Needs make build and a JDK.
# The last line of the output is "N passed, N failed".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$here/build
gson=/usr/share/java/gson.jar
junit=/usr/share/java/junit-platform-console-standalone.jar
if [ ! -f "$gson" ] || [ ! -f "$junit" ]; then
	echo "test-intellij: apt-get install libgoogle-gson-java junit5"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq libgoogle-gson-java junit5 >/dev/null ||
		{ echo "test-intellij: cannot install libgoogle-gson-java junit5" >&2; echo "0 passed, 1 failed"; exit 1; }
fi
for b in "$repo/bin/tether" "$repo/bin/tether-agent"; do
	[ -x "$b" ] || { echo "test-intellij: $b is missing: run make build" >&2; echo "0 passed, 1 failed"; exit 1; }
done
rm -rf "$out" && mkdir -p "$out/main" "$out/test"
javac --release 11 -Xlint:all -Werror -cp "$gson" -d "$out/main" $(find "$here/src/main/java" -name '*.java')
javac --release 11 -cp "$gson:$junit:$out/main" -d "$out/test" $(find "$here/src/test/java" -name '*.java')
set +e
java -Dtether.repo="$repo" -jar "$junit" --disable-banner --disable-ansi-colors --details=tree \
	--class-path "$gson:$out/main:$out/test" --select-package dev.tether.intellij \
	--reports-dir "$out/reports" | tee "$out/junit.out"
rc=${PIPESTATUS[0]}
set -e
ok=$(sed -n 's/.*\[ *\([0-9]*\) tests successful *\].*/\1/p' "$out/junit.out" | tail -1)
bad=$(sed -n 's/.*\[ *\([0-9]*\) tests failed *\].*/\1/p' "$out/junit.out" | tail -1)
[ "$rc" = 0 ] || [ "${bad:-0}" != 0 ] || bad=1
echo "${ok:-0} passed, ${bad:-1} failed"
[ "$rc" = 0 ]
