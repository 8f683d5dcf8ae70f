#!/usr/bin/env bash
# make bench: how many agents one qinfra-server holds, and how fast it
# ingests, on this machine.
#
# For each store (the embedded bbolt store, then PostgreSQL on a fresh
# schema) it starts a server on loopback, runs qinfra-loadgen's fixed
# scenario against it (enroll N agents for real, connect them all over
# mTLS gRPC, measure idle memory per agent, one full inventory each, deltas
# at a set rate with file-change probes, one command to every agent through
# the API) and samples the server's RSS and CPU from /proc. Optionally a
# ramp finds the most idle agents the server holds within a memory limit.
# Writes bench/results.json and bench/results.md.
#
# Environment (defaults keep the run to a few minutes):
#   QINFRA_BENCH_AGENTS=2000        simulated agents
#   QINFRA_BENCH_STORES="bbolt postgres"   (empty: only the ramp)
#   QINFRA_BENCH_TEMPLATES=5        image templates
#   QINFRA_BENCH_DELTA_RATE=1000    deltas/s over the fleet
#   QINFRA_BENCH_DELTA_SECONDS=20   delta phase length
#   QINFRA_BENCH_FANOUT=$AGENTS     agents sent one command each
#   QINFRA_BENCH_DRIFT_SAMPLES=50   file changes timed until visible
#   QINFRA_BENCH_DRIFT_BASELINE=true  false: no baseline (no drift evaluation); time the inventory proxy
#   QINFRA_BENCH_RAMP=0             1: also ramp (bbolt) to find the most idle agents
#   QINFRA_BENCH_RAMP_AGENTS=19000  QINFRA_BENCH_RAMP_STEP=2000  QINFRA_BENCH_RAMP_MEM_MIB=4096
#   QINFRA_BENCH_PG=postgres://postgres@127.0.0.1:5432/test?sslmode=disable
#   QINFRA_BENCH_CERT_CACHE=DIR     keep issued certificates across runs (same data dir only)
#   QINFRA_BENCH_PORT=18740         gRPC port; API +3, pprof +4
#   QINFRA_BENCH_PROFILE=1          save CPU and heap profiles under load to bench/profiles/
#   QINFRA_BENCH_OUT=bench/results  output prefix (.json, .md)
#   QINFRA_BENCH_KEEP=1             keep the work directory
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
AGENTS=${QINFRA_BENCH_AGENTS:-2000}
STORES=${QINFRA_BENCH_STORES-bbolt postgres}
TEMPLATES=${QINFRA_BENCH_TEMPLATES:-5}
DELTA_RATE=${QINFRA_BENCH_DELTA_RATE:-1000}
DELTA_SECONDS=${QINFRA_BENCH_DELTA_SECONDS:-20}
FANOUT=${QINFRA_BENCH_FANOUT:-$AGENTS}
DRIFT=${QINFRA_BENCH_DRIFT_SAMPLES:-50}
DRIFT_BASELINE=${QINFRA_BENCH_DRIFT_BASELINE:-true}
RAMP=${QINFRA_BENCH_RAMP:-0}
RAMP_AGENTS=${QINFRA_BENCH_RAMP_AGENTS:-19000}
RAMP_STEP=${QINFRA_BENCH_RAMP_STEP:-2000}
RAMP_MEM=${QINFRA_BENCH_RAMP_MEM_MIB:-4096}
PG=${QINFRA_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
PORT=${QINFRA_BENCH_PORT:-18740}
GRPC=127.0.0.1:$PORT API=127.0.0.1:$((PORT + 3)) PPROF=127.0.0.1:$((PORT + 4))
PROFILE=${QINFRA_BENCH_PROFILE:-0}
OUT=${QINFRA_BENCH_OUT:-bench/results}

WORK=$(mktemp -d /tmp/qinfra-bench.XXXXXX)
mkdir -p bench
server_pid= schema=
stop_server() {
	if [ -n "$server_pid" ]; then
		kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
		server_pid=
	fi
}
cleanup() {
	local rc=$?
	stop_server
	if [ -n "$schema" ]; then psql "$PG" -qc "SET client_min_messages=warning; DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; fi
	if [ $rc -ne 0 ]; then
		echo "bench failed; last lines of the logs:" >&2
		tail -n 15 "$WORK"/*.log 2>/dev/null >&2 || true
	fi
	if [ -z "${QINFRA_BENCH_KEEP:-}" ]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
	exit $rc
}
trap cleanup EXIT INT TERM

# --- operating system limits --------------------------------------------
# Each agent is one socket in the server and one in the load generator.
LIMITS=$WORK/limits.txt
: >"$LIMITS"
note() { echo "$*" | tee -a "$LIMITS" >&2; }
want_fds=$((AGENTS > RAMP_AGENTS || RAMP == 0 ? AGENTS : RAMP_AGENTS))
want_fds=$((want_fds + 1024))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want_fds" ]; then
	if ulimit -Hn "$want_fds" 2>/dev/null; then note "raised the hard open-files limit from $hard to $want_fds"
	else note "could not raise the hard open-files limit above $hard (no CAP_SYS_RESOURCE here): at most about $((hard - 100)) agents per process"; fi
fi
soft=$(ulimit -Sn)
target=$(ulimit -Hn)
[ "$target" = unlimited ] && target=$want_fds
if [ "$soft" != unlimited ] && [ "$soft" -lt "$target" ]; then
	ulimit -Sn "$target" && note "raised the soft open-files limit from $soft to $target"
fi
note "open-files limit now $(ulimit -Sn) (soft) / $(ulimit -Hn) (hard)"
set_sysctl() { # name wanted-value compare-as-min
	local name=$1 want=$2 cur
	cur=$(sysctl -n "$name" 2>/dev/null | tr -s '\t ' ' ') || { note "sysctl $name not readable"; return; }
	[ "$cur" = "$want" ] && return
	if [ -n "${3:-}" ] && [ "$cur" -ge "$want" ] 2>/dev/null; then return; fi
	if sysctl -qw "$name=$want" 2>/dev/null; then note "sysctl $name: '$cur' -> '$want'"
	else note "could not set sysctl $name (still '$cur')"; fi
}
set_sysctl net.ipv4.ip_local_port_range "1024 65535"
set_sysctl fs.file-max 2097152 min
set_sysctl net.core.somaxconn 65535 min
set_sysctl net.ipv4.tcp_max_syn_backlog 65535 min
echo "source addresses: 127.0.0.2-127.0.0.9, so ports are not the limit ($((8 * 64000)) connections)" >>"$LIMITS"

# --- build ---------------------------------------------------------------
echo "building qinfra-server and qinfra-loadgen" >&2
CGO_ENABLED=0 $GO build -trimpath -o "$WORK/qinfra-server" ./server/cmd/qinfra-server
CGO_ENABLED=0 $GO build -trimpath -o "$WORK/qinfra-loadgen" ./cmd/qinfra-loadgen

start_server() { # name [--store URL]
	local name=$1
	shift
	"$WORK/qinfra-server" init --data "$WORK/$name" --admin-token-file "$WORK/$name.token" "$@" >/dev/null
	"$WORK/qinfra-server" serve --data "$WORK/$name" --grpc-addr "$GRPC" --api-addr "$API" --pprof-addr "$PPROF" \
		--log-level warn "$@" >"$WORK/$name.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 1 100); do
		curl -sf --cacert "$WORK/$name/ca.crt" "https://$API/readyz" >/dev/null 2>&1 && return 0
		kill -0 "$server_pid" 2>/dev/null || { echo "server exited" >&2; return 1; }
		sleep 0.1
	done
	echo "server not ready" >&2
	return 1
}

profile() { # name: CPU and heap profiles while the scenario runs
	local name=$1
	mkdir -p bench/profiles
	sleep "${QINFRA_BENCH_PROFILE_DELAY:-15}"
	curl -sf "http://$PPROF/debug/pprof/profile?seconds=20" -o "bench/profiles/$name.cpu.pprof" || true
	curl -sf "http://$PPROF/debug/pprof/heap" -o "bench/profiles/$name.heap.pprof" || true
}

loadgen() { # name mode [flags]
	local name=$1 mode=$2
	shift 2
	"$WORK/qinfra-loadgen" -mode "$mode" -grpc-addr "$GRPC" -api "https://$API" -pprof "http://$PPROF" \
		-ca-file "$WORK/$name/ca.crt" -admin-token-file "$WORK/$name.token" -server-pid "$server_pid" \
		-templates "$TEMPLATES" ${QINFRA_BENCH_CERT_CACHE:+-cert-cache "$QINFRA_BENCH_CERT_CACHE"} "$@"
}

RESULTS=()
for store in $STORES; do
	echo "== $store: $AGENTS agents" >&2
	case $store in
	bbolt) start_server bbolt ;;
	postgres)
		schema=qinfra_bench_$$
		psql "$PG" -qc "CREATE SCHEMA $schema" >/dev/null
		start_server postgres --store "$PG&search_path=$schema"
		;;
	*) echo "unknown store $store" >&2; exit 2 ;;
	esac
	prof_pid=
	if [ "$PROFILE" = 1 ]; then profile "$store" & prof_pid=$!; fi
	loadgen "$store" run -store-label "$store" -agents "$AGENTS" -delta-rate "$DELTA_RATE" \
		-delta-duration "${DELTA_SECONDS}s" -fanout "$FANOUT" -drift-samples "$DRIFT" -drift-baseline="$DRIFT_BASELINE" \
		-out "$WORK/$store.json" 2>"$WORK/$store.loadgen.log" || { tail -20 "$WORK/$store.loadgen.log" >&2; exit 1; }
	[ -n "$prof_pid" ] && wait "$prof_pid"
	RESULTS+=("$WORK/$store.json")
	stop_server
	if [ -n "$schema" ]; then psql "$PG" -qc "SET client_min_messages=warning; DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null; schema=; fi
done

if [ "$RAMP" = 1 ]; then
	echo "== ramp (bbolt): up to $RAMP_AGENTS idle agents, $RAMP_STEP at a time, limit $RAMP_MEM MiB" >&2
	start_server ramp
	loadgen ramp ramp -store-label bbolt -agents "$RAMP_AGENTS" -ramp-step "$RAMP_STEP" -ramp-mem-limit "$RAMP_MEM" \
		-out "$WORK/ramp.json" 2>"$WORK/ramp.loadgen.log" || { tail -20 "$WORK/ramp.loadgen.log" >&2; exit 1; }
	RESULTS+=("$WORK/ramp.json")
	stop_server
fi

"$WORK/qinfra-loadgen" report -limits "$LIMITS" -json "$OUT.json" -md "$OUT.md" "${RESULTS[@]}"
cat "$OUT.md"
