#!/usr/bin/env bash
# wrk throughput of identity-sync's Users endpoint (lookup `userName eq`, PATCH 3x Replace, create),
# using the shared ../shared/bench/wrk/run.sh (beside the repository) and its Lua scripts.
#
# usage: benchmarks/wrk_users.sh [N=10000] [D=10 seconds per wrk phase] [CONNS=8] [--keep]
#
# Set-up is the same as load_users.py (benchmarks/_harness.py): a throw-away SQLite DB under /tmp,
# a tenant, `identity-sync serve` on a free loopback port, always stopped at the end (also on
# Ctrl-C / errors). run.sh preloads N users with Python (httpx), then runs wrk for D s per phase
# with one thread and CONNS connections. Prints run.sh's JSON line, a small table, and the
# server's own status-code counts / error lines; writes benchmarks/results/wrk_users-<UTC>.json.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
RUN_SH=${RUN_SH:-$REPO/../shared/bench/wrk/run.sh}
KEEP=""
ARGS=()
for a in "$@"; do [[ $a == --keep ]] && KEEP=--keep || ARGS+=("$a"); done
N=${ARGS[0]:-10000}; D=${ARGS[1]:-10}; C=${ARGS[2]:-8}
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install -y wrk)" >&2; exit 2; }

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${WRK_JSON_OUT:-$REPO/benchmarks/results/wrk_users-$STAMP.json}
mkdir -p "$(dirname "$OUT")"
SUMMARY=$(mktemp /tmp/idsync-wrk-summary.XXXXXX)

# The harness prints "BASE_URL TOKEN PID" and keeps the server up until its stdin closes.
coproc SRV { HARNESS_SUMMARY=$SUMMARY exec "$PY" "$HERE/_harness.py" $KEEP; }
HARNESS_PID=$SRV_PID   # bash unsets SRV_PID when the coproc ends
SRV_IN=${SRV[1]}
stop_server() {
  trap - EXIT INT TERM
  if [[ -n ${SRV_IN:-} ]]; then exec {SRV_IN}>&- || true; SRV_IN=""; fi
  # bounded wait for the harness to stop the server (SIGINT -> SIGTERM -> SIGKILL inside)
  for _ in $(seq 1 60); do kill -0 "$HARNESS_PID" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$HARNESS_PID" 2>/dev/null && kill "$HARNESS_PID" 2>/dev/null || true
}
trap 'stop_server' EXIT
trap 'echo "# interrupted" >&2; stop_server; exit 130' INT TERM

read -r -t 90 BASE TOKEN PID <&"${SRV[0]}" || { echo "server did not start" >&2; exit 1; }
echo "# server pid $PID on $BASE; N=$N D=${D}s conns=$C" >&2
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

T0=$(date +%s)
# run.sh: preload (bounded by N), then 3 x D s of wrk. Cap the whole thing.
RAW=${OUT%.json}.run_sh.txt
PY=$PY timeout $((600 + 3 * D)) bash "$RUN_SH" "$BASE" "$TOKEN" "$N" "$D" "$C" > "$RAW" 2>&1 || echo "# run.sh exit $?" >&2
LINE=$(grep '^{' "$RAW" | tail -n 1 || true)
T1=$(date +%s)
RSS=$(awk '/VmRSS/{print $2}' /proc/"$PID"/status 2>/dev/null || echo null)
stop_server
echo "run.sh: $LINE"

"$PY" - "$LINE" "$SUMMARY" "$OUT" "$N" "$D" "$C" "$((T1 - T0))" "$LOAD0" "${RSS:-null}" <<'PY'
import json, sys, os, datetime
line, summ, out, n, d, c, wall, load0, rss = sys.argv[1:]
try:
    r = json.loads(line)
except ValueError:
    r = {"unparsed": line}
try:
    s = json.load(open(summ))
except (OSError, ValueError):
    s = {}
doc = {"run": {"utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "users": int(n),
               "seconds_per_phase": int(d), "connections": int(c), "threads": 1, "wall_s": int(wall),
               "loadavg_start": load0, "loadavg_end": open("/proc/loadavg").read().split()[:3],
               "cpus": os.cpu_count()},
       "wrk": r, "server": {"rss_kib_before_stop": None if rss == "null" else int(rss), **s}}
open(out, "w").write(json.dumps(doc, indent=1))
print(f"\nidentity-sync wrk  N={n} (preloaded {r.get('users')})  {d}s/phase  {c} conns, 1 thread")
print(f"{'phase':10} {'req/s':>9} {'p99':>10}")
for k in ("lookup", "create", "patch"):
    print(f"{k:10} {str(r.get(k + '_rps')):>9} {str(r.get(k + '_p99')):>10}")
print(f"wrk errors: {r.get('errors') or 'none'}")
print(f"server status codes: {s.get('access_log_status_codes')}; requests >1 s: {s.get('requests_over_1s')}; "
      f"warning/error lines: {s.get('error_lines_total')}; RSS {rss} KiB, peak {s.get('rss_peak_kib')} KiB")
for l in (s.get("error_lines_sample") or [])[:5]:
    print("  server:", l[:300])
print(f"full JSON: {out}")
PY
rm -f "$SUMMARY"
