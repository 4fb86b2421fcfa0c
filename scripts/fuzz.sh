#!/usr/bin/env bash
# Runs every fuzz target of the module (every `func FuzzXxx` in a _test.go
# file) for FUZZTIME each. Targets are discovered, so a new fuzz test is
# fuzzed by `make test` without touching the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
n=0
while IFS=: read -r file fn; do
	pkg=./$(dirname "$file")
	echo "fuzz $pkg $fn ($FUZZTIME)"
	# -parallel 2: the machine has 2 cores; more workers only add memory.
	# Go's fuzz coordinator (before 1.27, go.dev/issue/75804) can report
	# "context deadline exceeded" as the fuzz time ends, with no failing
	# input: that run is repeated once. A found input ("Failing input
	# written") or any other failure fails at once.
	for attempt in 1 2; do
		if "$GO" test -run='^$' -fuzz="^${fn}\$" -fuzztime="$FUZZTIME" -parallel 2 "$pkg" 2>&1 | tee "$log"; then
			break
		fi
		if [ "$attempt" = 1 ] && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
			echo "fuzz: $fn: the fuzz coordinator's deadline race (go.dev/issue/75804), no failing input: running it again"
			continue
		fi
		exit 1
	done
	n=$((n + 1))
done < <(git ls-files '*_test.go' | xargs grep -Ho '^func Fuzz[A-Za-z0-9_]*' | sed 's/^\(.*\):func \(Fuzz.*\)$/\1:\2/' | sort)
if [ "$n" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
echo "fuzz: $n targets fuzzed for $FUZZTIME each"
