#!/usr/bin/env bash
# Runs each Fuzz target of the module, one after another, for FUZZTIME
# (default 30s). Targets are discovered with `go test -list '^Fuzz' ./...`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}

list=$("$GO" test -list '^Fuzz' ./...)
targets=()
names=()
while IFS= read -r line; do
	case $line in
	Fuzz*) names+=("$line") ;;
	ok*)
		pkg=$(awk '{print $2}' <<<"$line")
		for name in "${names[@]}"; do targets+=("$pkg $name"); done
		names=()
		;;
	*) names=() ;;
	esac
done <<<"$list"

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no Fuzz targets found"
	exit 0
fi
for target in "${targets[@]}"; do
	read -r pkg name <<<"$target"
	echo "=== fuzz $pkg $name for $FUZZTIME"
	"$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg"
done
echo "fuzz: ${#targets[@]} targets passed"
