#!/usr/bin/env bash
# make bench-agent: the agent's footprint on this machine.
#
#   - full scan time without file hashing: `qinfra-agent snapshot` on the
#     host root with the files collector disabled, median wall time of
#     several runs, and the process start-up cost measured the same way;
#   - peak RSS (VmHWM) of `qinfra-agent run` through its first full scan;
#   - idle RSS (VmRSS) and CPU (utime+stime) of the running agent over an
#     idle window, connected to a local server started for the purpose.
#
# Prints a markdown table and writes bench/agent.json. Everything runs on
# loopback in a temporary directory and is stopped at the end.
#
# Environment: QINFRA_BENCH_ROOT (host root, default /), QINFRA_BENCH_IDLE
# (idle window in seconds, default 30), QINFRA_BENCH_RUNS (snapshot runs,
# default 7), QINFRA_BENCH_GRPC_PORT / QINFRA_BENCH_API_PORT (default
# 18640 / 18643), QINFRA_BENCH_KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
HOST_ROOT=${QINFRA_BENCH_ROOT:-/}
IDLE=${QINFRA_BENCH_IDLE:-30}
RUNS=${QINFRA_BENCH_RUNS:-7}
GRPC_PORT=${QINFRA_BENCH_GRPC_PORT:-18640}
API_PORT=${QINFRA_BENCH_API_PORT:-18643}
SETTLE=5
OUT=bench/agent.json

WORK=$(mktemp -d /tmp/qinfra-bench.XXXXXX)
server_pid= agent_pid=
cleanup() {
	local rc=$?
	[ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
	[ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
	if [ $rc -ne 0 ]; then
		echo "bench-agent failed; last lines of the logs:" >&2
		tail -n 15 "$WORK/server.log" "$WORK/agent.log" 2>/dev/null >&2 || true
	fi
	if [ -z "${QINFRA_BENCH_KEEP:-}" ]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
	exit $rc
}
trap cleanup EXIT INT TERM

log() { printf '==> %s\n' "$*" >&2; }
now_ns() { date +%s%N; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# status_kib PID FIELD prints a VmRSS/VmHWM-style field of /proc/PID/status in KiB.
status_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
# cpu_ticks PID prints utime+stime of PID in clock ticks; the command name,
# which may hold spaces, is cut off first.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# cpu_ns PID prints the CPU time of PID's live threads in nanoseconds, finer
# than the clock ticks of /proc/PID/stat.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{n += $1} END {printf "%d", n}'; }
kib_to_mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

log "building the agent, server and qinfractl as 'make build' does"
BIN=$WORK/bin
CGO_ENABLED=0 $GO build -trimpath -ldflags '-s -w' -o "$BIN/" ./agent/cmd/qinfra-agent ./server/cmd/qinfra-server ./cmd/qinfractl

# --- Full scan without file hashing -----------------------------------------
cat >"$WORK/nofiles.yaml" <<EOF
state_dir: $WORK/snapshot
host_root: $HOST_ROOT
disabled_collectors: [files]
EOF
log "timing $RUNS snapshots of $HOST_ROOT without the files collector"
"$BIN/qinfra-agent" snapshot --config "$WORK/nofiles.yaml" >"$WORK/snapshot.txt" 2>"$WORK/snapshot.err" || true
scan_times=() start_times=()
for _ in $(seq "$RUNS"); do
	t0=$(now_ns)
	"$BIN/qinfra-agent" snapshot --config "$WORK/nofiles.yaml" >/dev/null 2>&1 || true
	t1=$(now_ns)
	"$BIN/qinfra-agent" version >/dev/null
	t2=$(now_ns)
	scan_times+=($(((t1 - t0) / 1000)))
	start_times+=($(((t2 - t1) / 1000)))
done
scan_us=$(printf '%s\n' "${scan_times[@]}" | median)
start_us=$(printf '%s\n' "${start_times[@]}" | median)
items=$(awk 'NR > 1 {n += $2} END {print n + 0}' "$WORK/snapshot.txt")
snapshot_hwm=
if [ -x /usr/bin/time ]; then
	snapshot_hwm=$(/usr/bin/time -f '%M' "$BIN/qinfra-agent" snapshot --config "$WORK/nofiles.yaml" 2>&1 >/dev/null | tail -1)
fi

# --- A running agent, connected to a local server ----------------------------
log "starting a server in $WORK/server"
"$BIN/qinfra-server" init --data "$WORK/server" --admin-token-file "$WORK/admin.token" >"$WORK/init.txt"
FP=$(sed -n 's/^CA fingerprint: //p' "$WORK/init.txt")
"$BIN/qinfra-server" serve --data "$WORK/server" --grpc-addr "127.0.0.1:$GRPC_PORT" --api-addr "127.0.0.1:$API_PORT" >"$WORK/server.log" 2>&1 &
server_pid=$!
export QINFRA_SERVER="https://127.0.0.1:$API_PORT" QINFRA_CA_FILE="$WORK/server/ca.crt"
QINFRA_TOKEN=$(cat "$WORK/admin.token")
export QINFRA_TOKEN
for _ in $(seq 1 100); do
	curl -sf --cacert "$QINFRA_CA_FILE" "$QINFRA_SERVER/readyz" >/dev/null 2>&1 && break
	kill -0 "$server_pid" 2>/dev/null || { echo "server exited" >&2; exit 1; }
	sleep 0.1
done
"$BIN/qinfractl" token create --uses 1 --ttl 10m --label env=bench -o json >"$WORK/token.json"
ENROLL_TOKEN=$(sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' "$WORK/token.json" | head -1)
[ -n "$ENROLL_TOKEN" ] || { echo "no token in qinfractl output" >&2; exit 1; }

scan_interval=60s
cat >"$WORK/agent.yaml" <<EOF
state_dir: $WORK/agent
host_root: $HOST_ROOT
scan_interval: $scan_interval
log_level: info
EOF
"$BIN/qinfra-agent" enroll --config "$WORK/agent.yaml" --server "127.0.0.1:$GRPC_PORT" --token "$ENROLL_TOKEN" --ca-fingerprint "$FP" >/dev/null

log "running the agent on $HOST_ROOT"
"$BIN/qinfra-agent" run --config "$WORK/agent.yaml" >"$WORK/agent.log" 2>&1 &
agent_pid=$!
# Peak RSS through the first full scan (hashing included): VmHWM as soon
# as the first inventory is spooled.
for _ in $(seq 1 1200); do
	grep -q 'inventory spooled' "$WORK/agent.log" && break
	kill -0 "$agent_pid" 2>/dev/null || { echo "agent exited" >&2; exit 1; }
	sleep 0.05
done
grep -q 'inventory spooled' "$WORK/agent.log" || { echo "no inventory within 60s" >&2; exit 1; }
scan_hwm=$(status_kib "$agent_pid" VmHWM)
for _ in $(seq 1 200); do
	grep -q 'msg=connected' "$WORK/agent.log" && break
	sleep 0.05
done
grep -q 'msg=connected' "$WORK/agent.log" || { echo "agent never connected" >&2; exit 1; }

log "letting it settle ${SETTLE}s, then sampling ${IDLE}s of idle"
sleep "$SETTLE"
hz=$(getconf CLK_TCK)
ticks0=$(cpu_ticks "$agent_pid")
ns0=$(cpu_ns "$agent_pid")
t0=$(now_ns)
rss=() anon=() file=()
for _ in $(seq "$IDLE"); do
	sleep 1
	rss+=("$(status_kib "$agent_pid" VmRSS)")
	anon+=("$(status_kib "$agent_pid" RssAnon)")
	file+=("$(status_kib "$agent_pid" RssFile)")
done
ticks1=$(cpu_ticks "$agent_pid")
ns1=$(cpu_ns "$agent_pid")
t1=$(now_ns)
idle_rss=$(printf '%s\n' "${rss[@]}" | median)
idle_rss_max=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
idle_anon=$(printf '%s\n' "${anon[@]}" | median)
idle_file=$(printf '%s\n' "${file[@]}" | median)
binary_kib=$(($(stat -c %s "$BIN/qinfra-agent") / 1024))
end_hwm=$(status_kib "$agent_pid" VmHWM)
# utime+stime counts whole clock ticks; the threads' schedstat counts
# nanoseconds but forgets threads that exit. The larger is reported.
cpu_ms=$(awk -v d="$((ticks1 - ticks0))" -v hz="$hz" -v ns="$((ns1 - ns0))" 'BEGIN {a = 1000 * d / hz; b = ns / 1e6; printf "%.2f", (a > b) ? a : b}')
cpu_pct=$(awk -v ms="$cpu_ms" -v ns="$((t1 - t0))" 'BEGIN {printf "%.3f", 100 * ms / (ns / 1e6)}')
watch_state=live
grep -q 'live change detection is off' "$WORK/agent.log" && watch_state=degraded

# --- Report ------------------------------------------------------------------
verdict() { awk -v v="$1" -v max="$2" 'BEGIN {print (v <= max) ? "ok" : "MISSED"}'; }
scan_ms=$(awk -v u="$scan_us" 'BEGIN {printf "%.1f", u / 1000}')
start_ms=$(awk -v u="$start_us" 'BEGIN {printf "%.1f", u / 1000}')
net_ms=$(awk -v a="$scan_us" -v b="$start_us" 'BEGIN {printf "%.1f", (a - b) / 1000}')
cat <<EOF

## qinfra-agent footprint — $(uname -n), $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), host root $HOST_ROOT

| measure | value | target | |
|---|---|---|---|
| full scan without file hashing ($items items; snapshot wall time ${scan_ms} ms − process start-up ${start_ms} ms, medians of $RUNS) | ${net_ms} ms | ≤ 100 ms | $(verdict "$net_ms" 100) |
| peak RSS through the first full scan (run, VmHWM) | $(kib_to_mib "$scan_hwm") MiB | ≤ 40 MiB | $(verdict "$(kib_to_mib "$scan_hwm")" 40) |
| idle RSS (run, VmRSS median of ${IDLE} samples; max $(kib_to_mib "$idle_rss_max") MiB) | $(kib_to_mib "$idle_rss") MiB | ≤ 15 MiB | $(verdict "$(kib_to_mib "$idle_rss")" 15) |
| of which anonymous (heap, stacks, runtime) / file-backed (the $(kib_to_mib "$binary_kib") MiB binary's pages) | $(kib_to_mib "$idle_anon") / $(kib_to_mib "$idle_file") MiB | | |
| idle CPU over ${IDLE}s (utime+stime; scan interval $scan_interval, watcher $watch_state) | ${cpu_pct} % of a core (${cpu_ms} ms) | — | |
| peak RSS of a snapshot without hashing (VmHWM) | $(kib_to_mib "${snapshot_hwm:-0}") MiB | — | |
EOF

mkdir -p "$(dirname "$OUT")"
cat >"$OUT" <<EOF
{
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "host": {"name": "$(uname -n)", "kernel": "$(uname -r)", "cpus": $(nproc), "cpu": "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"},
  "go": "$($GO env GOVERSION)",
  "host_root": "$HOST_ROOT",
  "items_without_files": $items,
  "scan_without_hashing_ms": $scan_ms,
  "process_startup_ms": $start_ms,
  "scan_without_hashing_net_ms": $net_ms,
  "snapshot_peak_rss_kib": ${snapshot_hwm:-null},
  "first_scan_peak_rss_kib": $scan_hwm,
  "idle_rss_kib": $idle_rss,
  "idle_rss_max_kib": $idle_rss_max,
  "idle_rss_anon_kib": $idle_anon,
  "idle_rss_file_kib": $idle_file,
  "binary_kib": $binary_kib,
  "end_peak_rss_kib": $end_hwm,
  "idle_seconds": $IDLE,
  "idle_cpu_percent": $cpu_pct,
  "idle_cpu_ms": $cpu_ms,
  "scan_interval": "$scan_interval",
  "watcher": "$watch_state",
  "targets": {"idle_rss_mib": 15, "scan_peak_rss_mib": 40, "scan_without_hashing_ms": 100}
}
EOF
log "wrote $OUT"
