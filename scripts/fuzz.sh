#!/usr/bin/env bash
# Runs every Fuzz target of the module, one after another, for FUZZTIME
# (default 30s) each beyond its seed corpus. `make fuzz` runs it as is;
# `make test` (hence CI) runs it with a few seconds per target.
#
# Packages with targets are found by grep and their targets listed by the
# test binary itself (-test.list), which is built once per package with
# fuzzing instrumentation (go test -c -fuzz), so each further target of a
# package costs no build or link. Inputs the fuzzer found interesting are
# kept where `go test -fuzz` keeps them ($GOCACHE/fuzz/<package>).
#
# A failing target does not stop the others. At the end the script exits 1,
# names the failing targets and prints every new crasher, which the fuzzer
# left in the package's testdata/fuzz/<target>/ for the fix to commit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}

cache="$("$GO" env GOCACHE)/fuzz"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
touch "$work/start"

# FUZZPKGS (package directories, e.g. "./device ./router") narrows the run.
if [ -n "${FUZZPKGS:-}" ]; then
	read -ra dirs <<<"$FUZZPKGS"
else
	mapfile -t dirs < <(grep -rlE --include='*_test.go' --exclude-dir=testdata --exclude-dir=.git \
		'^func Fuzz[A-Za-z0-9_]*\(' . | xargs -r -n1 dirname | sort -u)
fi
if [ ${#dirs[@]} -eq 0 ]; then
	echo "fuzz: no Fuzz targets found in the module: the search is broken" >&2
	exit 1
fi

targets=0
failed=()
flaked=()
for dir in "${dirs[@]}"; do
	pkg=$("$GO" list "$dir")
	bin="$work/$(tr / _ <<<"$pkg").test"
	if ! "$GO" test -c -fuzz=. -o "$bin" "$dir"; then
		failed+=("$pkg (does not build)")
		continue
	fi
	mapfile -t names < <(cd "$dir" && "$bin" -test.list '^Fuzz' | grep '^Fuzz')
	if [ ${#names[@]} -eq 0 ]; then
		failed+=("$pkg (grep found a Fuzz function, -test.list none)")
		continue
	fi
	for name in "${names[@]}"; do
		targets=$((targets + 1))
		echo "=== fuzz $pkg $name for $FUZZTIME"
		# As go test runs it: in the package directory, so that seeds are
		# read from and crashers written to its testdata/fuzz.
		if (cd "$dir" && "$bin" -test.run='^$' -test.fuzz="^${name}\$" -test.fuzztime="$FUZZTIME" \
			-test.fuzzcachedir="$cache/$pkg" -test.timeout=10m -test.paniconexit0) 2>&1 | tee "$work/out"; then
			continue
		fi
		# Go's fuzz coordinator up to 1.26 may report the end of -fuzztime
		# itself as a failure, "context deadline exceeded" with no input
		# (go.dev/issue/75804, fixed in Go 1.27), most often on a loaded
		# machine. That alone is no finding; anything else is.
		if [ "$(grep -cvE '^fuzz: elapsed|^warning: starting with empty corpus$|^--- FAIL: '"$name"' |^    context deadline exceeded$|^FAIL$' "$work/out")" -eq 0 ] &&
			grep -qx '    context deadline exceeded' "$work/out" &&
			[ -z "$(find "$dir/testdata/fuzz/$name" -type f -newer "$work/start" 2>/dev/null)" ]; then
			echo "fuzz: $pkg $name: the fuzzer's own deadline race (go.dev/issue/75804), no input failed; not a finding"
			flaked+=("$pkg $name")
			continue
		fi
		failed+=("$pkg $name")
	done
done

if [ ${#failed[@]} -ne 0 ]; then
	echo "fuzz: FAILED: ${failed[*]}" >&2
	while IFS= read -r crasher; do
		echo "--- new crasher $crasher (commit it with the fix; go test runs it as a seed from then on):" >&2
		head -c 4096 "$crasher" >&2
		echo >&2
	done < <(find . -path ./.git -prune -o -type f -path '*/testdata/fuzz/*' -newer "$work/start" -print)
	exit 1
fi
echo "fuzz: ${targets} targets passed, ${FUZZTIME} each"
if [ ${#flaked[@]} -ne 0 ]; then
	echo "fuzz: the fuzzer's deadline race (go.dev/issue/75804) ended ${#flaked[@]} of them early: ${flaked[*]}"
fi
