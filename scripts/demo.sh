#!/usr/bin/env bash
# make demo: a server on the embedded store in a temporary data dir, an
# agent enrolled for this very machine, its inventory shown through
# qinfractl, a golden baseline captured from it and a stricter policy
# applied on top, with the drift they find. Everything runs on loopback
# and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
GRPC_PORT=${QINFRA_DEMO_GRPC_PORT:-18440}
API_PORT=${QINFRA_DEMO_API_PORT:-18443}
DEMO=$(mktemp -d /tmp/qinfra-demo.XXXXXX)
KEEP=${QINFRA_DEMO_KEEP:-}

server_pid= agent_pid=
cleanup() {
	local rc=$?
	[ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
	[ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
	if [ $rc -ne 0 ]; then
		echo
		echo "demo failed; last lines of the logs:"
		tail -n 15 "$DEMO/server.log" "$DEMO/agent.log" 2>/dev/null || true
	fi
	if [ -z "$KEEP" ]; then rm -rf "$DEMO"; else echo "kept $DEMO"; fi
	exit $rc
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Initializing a server data directory in $DEMO/server"
"$BIN/qinfra-server" init --data "$DEMO/server" --admin-token-file "$DEMO/admin.token" | tee "$DEMO/init.txt"
FP=$(sed -n 's/^CA fingerprint: //p' "$DEMO/init.txt")

step "Starting qinfra-server (agents: 127.0.0.1:$GRPC_PORT mTLS gRPC, API: https://127.0.0.1:$API_PORT)"
"$BIN/qinfra-server" serve --data "$DEMO/server" --grpc-addr "127.0.0.1:$GRPC_PORT" --api-addr "127.0.0.1:$API_PORT" \
	>"$DEMO/server.log" 2>&1 &
server_pid=$!

export QINFRA_SERVER="https://127.0.0.1:$API_PORT"
export QINFRA_TOKEN=$(cat "$DEMO/admin.token")
export QINFRA_CA_FILE="$DEMO/server/ca.crt"
for i in $(seq 1 100); do
	"$BIN/qinfractl" version >/dev/null 2>&1 && curl -sf --cacert "$QINFRA_CA_FILE" "$QINFRA_SERVER/readyz" >/dev/null 2>&1 && break
	kill -0 "$server_pid" 2>/dev/null || { echo "server exited"; exit 1; }
	sleep 0.1
done

step "Creating a one-time enrollment token (qinfractl token create --uses 1 --ttl 10m --label env=demo)"
"$BIN/qinfractl" token create --uses 1 --ttl 10m --label env=demo -o json >"$DEMO/token.json"
ENROLL_TOKEN=$(sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' "$DEMO/token.json" | head -1)
[ -n "$ENROLL_TOKEN" ] || { echo "no token in qinfractl output:"; cat "$DEMO/token.json"; exit 1; }
echo "token created (secret not shown again)"

step "Enrolling an agent for this machine"
"$BIN/qinfra-agent" enroll --server "127.0.0.1:$GRPC_PORT" --token "$ENROLL_TOKEN" --ca-fingerprint "$FP" \
	--state-dir "$DEMO/agent"
HOST_ID=$(cat "$DEMO/agent/host_id")

step "Running the agent (host root /)"
"$BIN/qinfra-agent" run --state-dir "$DEMO/agent" --host-root / >"$DEMO/agent.log" 2>&1 &
agent_pid=$!

printf 'waiting for the inventory to arrive'
for i in $(seq 1 300); do
	# The first full inventory lands in one transaction: any package
	# counted means all of it is there.
	if "$BIN/qinfractl" host get "$HOST_ID" -o json 2>/dev/null | grep -Eq '"package": [1-9]'; then break; fi
	kill -0 "$agent_pid" 2>/dev/null || { echo; echo "agent exited"; exit 1; }
	printf '.'
	sleep 0.2
done
echo
"$BIN/qinfractl" host get "$HOST_ID" -o json | grep -Eq '"package": [1-9]' || { echo "no inventory arrived within 60s"; exit 1; }

step "qinfractl hosts list"
"$BIN/qinfractl" hosts list

step "qinfractl host inventory $HOST_ID (summary and a few packages)"
"$BIN/qinfractl" host inventory "$HOST_ID" --kind package | sed -n 1,14p

step "A few users and services"
"$BIN/qinfractl" host inventory "$HOST_ID" --kind user | sed -n '1,8p'
"$BIN/qinfractl" host inventory "$HOST_ID" --kind service | sed -n '1,8p'

step "Capturing a golden baseline from this host (baseline capture --kinds package --minimum --selector env=demo)"
"$BIN/qinfractl" baseline capture --host "$HOST_ID" --name demo-golden --kinds package --minimum --selector env=demo
echo "Drift against its own capture:"
"$BIN/qinfractl" drift host "$HOST_ID"

step "Applying a stricter policy on top of it (qinfractl baseline apply -f policy.yaml)"
cat >"$DEMO/policy.yaml" <<'YAML'
name: demo-policy
priority: 10                # wins over demo-golden where both have a rule
selector: {env: demo}
packages:
  - {name: bash, constraint: minimum, version: "99"}
files:
  - {path: /etc/hostname, mode: "0600", owner: root}
users:
  uid0_only_root: true
  no_empty_passwords: true
YAML
sed 's/^/    /' "$DEMO/policy.yaml"
"$BIN/qinfractl" baseline apply -f "$DEMO/policy.yaml"
# The server sends the agent the baseline's file paths; the agent hashes
# /etc/hostname (its configuration did not watch it) and reports it.
printf 'waiting for the agent to report /etc/hostname'
for i in $(seq 1 60); do
	if "$BIN/qinfractl" drift host "$HOST_ID" | grep -q '/etc/hostname' &&
		! "$BIN/qinfractl" drift host "$HOST_ID" | grep -q '^Not checked'; then break; fi
	printf '.'
	sleep 0.5
done
echo
"$BIN/qinfractl" drift host "$HOST_ID"
echo
"$BIN/qinfractl" drift

step "Reaching the API yourself"
cat <<TXT
While a server runs, the REST API is at $QINFRA_SERVER/api/v1 (OpenAPI: /api/v1/openapi.json):
  curl --cacert $QINFRA_CA_FILE -H "Authorization: Bearer \$QINFRA_TOKEN" $QINFRA_SERVER/api/v1/hosts
  qinfractl --server $QINFRA_SERVER --ca-file $QINFRA_CA_FILE --token \$QINFRA_TOKEN hosts list
Set QINFRA_DEMO_KEEP=1 to keep the data directory and logs of this run.
TXT

step "Stopping agent and server"
