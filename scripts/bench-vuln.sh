#!/usr/bin/env bash
# bench-vuln: match 50,000 simulated hosts drawn from 20 images against about
# 50,000 OSV advisories (the real AlmaLinux 9 set in
# server/internal/vuln/testdata plus generated ones in the same shape), and
# fail unless the whole match takes less than BENCH_VULN_LIMIT_S seconds
# (60). BENCH_VULN_FANOUT=1 also times walking every host's findings.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
limit=${BENCH_VULN_LIMIT_S:-60}
bench='^BenchmarkMatchFleet$/^match$'
if [ "${BENCH_VULN_FANOUT:-0}" = 1 ]; then
	bench='^BenchmarkMatchFleet$'
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
run=("$GO" test -run '^$' -bench "$bench" -benchtime 1x -benchmem -count 1 ./server/internal/vuln)
if [ -x /usr/bin/time ]; then
	/usr/bin/time -f 'bench-vuln: peak memory of the benchmark process %M KiB, wall %e s' "${run[@]}" 2>&1 | tee "$out"
else
	"${run[@]}" 2>&1 | tee "$out"
fi

ns=$(awk '$1 ~ /^BenchmarkMatchFleet\/match/ { print $3; exit }' "$out")
if [ -z "$ns" ]; then
	echo "bench-vuln: the benchmark printed no result" >&2
	exit 1
fi
awk -v ns="$ns" -v limit="$limit" 'BEGIN {
	s = ns / 1e9
	printf "bench-vuln: 50000 hosts matched in %.2f s (limit %d s)\n", s, limit
	exit (s < limit) ? 0 : 1
}'
