#!/bin/sh
# `make fuzz`: runs each libFuzzer target for SECONDS, then merges what it
# found into the committed corpus (minimised) and copies any crasher into
# fuzz/regressions/<target>/ (replayed by `make check` from then on).
#
#   sh fuzz/run.sh BUILD_DIR SECONDS TARGET...
#
# Work corpora and crash artifacts stay in BUILD_DIR/fuzz-work and
# BUILD_DIR/fuzz-crashes; a summary of the run (executions, coverage,
# corpus sizes, crashers) goes to BUILD_DIR/fuzz-summary.txt.  Exit status
# 1 when any target crashed.
set -u
B=$1
S=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
summary="$B/fuzz-summary.txt"
: >"$summary"
failed=0
export CLEAVE_TEST_TMP="${CLEAVE_TEST_TMP:-$B/testtmp}"
mkdir -p "$CLEAVE_TEST_TMP"
for t in "$@"; do
	exe="$B/fuzz/fuzz_$t"
	work="$B/fuzz-work/$t"
	crashes="$B/fuzz-crashes/$t"
	log="$B/fuzz-$t.log"
	mkdir -p "$work" "$crashes" "$here/corpus/$t" "$here/regressions/$t"
	opts="-max_total_time=$S -print_final_stats=1 -artifact_prefix=$crashes/"
	case "$t" in
	http) opts="$opts -max_len=80000 -detect_leaks=0 -timeout=30 -rss_limit_mb=4096" ;;
	json) opts="$opts -max_len=16384 -timeout=10" ;;
	*) opts="$opts -max_len=8192 -timeout=10" ;;
	esac
	echo "fuzz: $t for ${S}s"
	ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1}" \
	UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
	"$exe" $opts "$work" "$here/corpus/$t" "$here/regressions/$t" \
		>"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
	ncrash=0
	for f in "$crashes"/*; do
		[ -f "$f" ] || continue
		ncrash=$((ncrash + 1))
		cp "$f" "$here/regressions/$t/"
	done
	# minimise: the committed corpus becomes the smallest set of inputs
	# (old and new) with the same coverage
	merged="$B/fuzz-merged/$t"
	rm -rf "$merged"
	mkdir -p "$merged"
	"$exe" -merge=1 -max_len=80000 -detect_leaks=0 "$merged" \
		"$here/corpus/$t" "$work" >"$B/fuzz-$t-merge.log" 2>&1 &&
		[ -n "$(ls "$merged")" ] &&
		rm -f "$here/corpus/$t"/* && cp "$merged"/* "$here/corpus/$t/"
	n=$(ls "$here/corpus/$t" | wc -l)
	line="$t: ${S}s, ${execs:-?} executions, ${cov:-cov: ?}, corpus $n files, exit $rc, crashers $ncrash"
	echo "fuzz: $line"
	echo "$line" >>"$summary"
	if [ "$rc" -ne 0 ] || [ "$ncrash" -ne 0 ]; then
		failed=1
		tail -40 "$log"
	fi
done
cat "$summary"
exit $failed
