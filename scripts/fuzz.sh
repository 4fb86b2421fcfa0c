#!/usr/bin/env bash
# Runs every fuzz target of the module (every `func FuzzXxx` in a _test.go
# file) for FUZZTIME each. Targets are discovered, so a new fuzz test is
# fuzzed by `make test` without touching the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
n=0
while IFS=: read -r file fn; do
	pkg=./$(dirname "$file")
	echo "fuzz $pkg $fn ($FUZZTIME)"
	# -parallel 2: the machine has 2 cores; more workers only add memory.
	"$GO" test -run='^$' -fuzz="^${fn}\$" -fuzztime="$FUZZTIME" -parallel 2 "$pkg"
	n=$((n + 1))
done < <(git ls-files '*_test.go' | xargs grep -Ho '^func Fuzz[A-Za-z0-9_]*' | sed 's/^\(.*\):func \(Fuzz.*\)$/\1:\2/' | sort)
if [ "$n" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
echo "fuzz: $n targets fuzzed for $FUZZTIME each"
