#!/usr/bin/env bash
# fuzz.sh FUZZTIME PKG TARGET [PKG TARGET]...: run each fuzz target for
# FUZZTIME; fail if one found a failing input.
#
# Go 1.26's fuzzing coordinator sometimes reports "context deadline
# exceeded" as a failure when -fuzztime ends while a worker is busy,
# without any failing input (golang/go#75804, fixed in Go 1.27). Such a
# run wrote no reproducer under testdata/fuzz/TARGET: it is reported as
# what it is and does not fail the run; any other failure does.
set -u
go=${GO:-go}
fuzztime=$1
shift
failed=()
while [ $# -ge 2 ]; do
	pkg=$1 target=$2
	shift 2
	corpus="$pkg/testdata/fuzz/$target"
	before=$(ls "$corpus" 2>/dev/null | wc -l)
	out=$("$go" test -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "./$pkg/" 2>&1)
	rc=$?
	after=$(ls "$corpus" 2>/dev/null | wc -l)
	if [ "$rc" = 0 ]; then
		echo "fuzz $pkg $target: ok, $fuzztime"
	elif [ "$after" = "$before" ] && printf '%s\n' "$out" | grep -q '^    context deadline exceeded$'; then
		echo "fuzz $pkg $target: no failing input; Go's coordinator said \"context deadline exceeded\" as -fuzztime ended (golang/go#75804, fixed in Go 1.27)"
	else
		printf '%s\n' "$out"
		failed+=("$pkg $target")
	fi
done
if [ ${#failed[@]} -gt 0 ]; then
	printf 'fuzz: failing inputs found by: %s (see %s)\n' "${failed[*]}" "testdata/fuzz/<target> in each package" >&2
	exit 1
fi
