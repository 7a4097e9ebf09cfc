#!/usr/bin/env bash
# `serve --workers 1` then `--workers 2` on one fresh SQLite database each, the same wrk run
# (../shared/bench/wrk/run.sh: N preloaded users, lookup / PATCH / create for D seconds, C
# connections) against each; one JSON line per worker count. Only ratios measured in one run mean
# anything on a shared machine.
# usage: (cd REPOSITORY && benchmarks/workers_scaling.sh [N=5000] [D=10] [C=8])   needs wrk, .venv
set -u
N=${1:-5000}; D=${2:-10}; C=${3:-8}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN="$ROOT/../shared/bench/wrk/run.sh"
VENV=$ROOT/.venv
export PY="$VENV/bin/python"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 150); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.2; done; return 1; }
WORK=$(mktemp -d /tmp/idsync-bench-workers.XXXX); SERVER=
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for W in 1 2; do
  export IDSYNC_DATA_DIR=$WORK/data-$W IDSYNC_DATABASE_URL=sqlite:///$WORK/bench-$W.db IDSYNC_RATE_LIMIT_PER_SECOND=0
  "$VENV/bin/identity-sync" migrate >/dev/null 2>&1
  P=$(free_port)
  timeout $((600 + 3 * D)) "$VENV/bin/identity-sync" serve --host 127.0.0.1 --port $P --workers $W >"$WORK/serve-$W.log" 2>&1 &
  SERVER=$!
  wait_port $P
  T=$("$VENV/bin/identity-sync" tenant create bench --json)
  TOKEN=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$T")
  echo "{\"workers\": $W, \"loadavg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"result\": $(bash "$RUN" "http://127.0.0.1:$P/scim/v2/bench" "$TOKEN" $N $D $C)}"
  kill $SERVER; wait $SERVER 2>/dev/null; SERVER=
done
