#!/usr/bin/env bash
# Runs the two external SCIM suites against BASE_URL and leaves their raw outputs in OUTDIR:
#   scim2-tester.txt     scim2-tester through scim2-cli (`scim2 test --verbose`), one line per check
#   scim-sanity.json     scim-sanity probe, strict mode, JSON results
# Adapted from the team's bench/compliance.sh (which CI cannot see). Tools come from PATH.
# Usage: run_suites.sh BASE_URL TOKEN OUTDIR
set -u
BASE_URL=${1:?usage: run_suites.sh BASE_URL TOKEN OUTDIR}
TOKEN=${2:?token required}
OUT=${3:?outdir required}
mkdir -p "$OUT"
case "$BASE_URL" in
  http://127.*|http://localhost*) ;;
  *) echo "refusing non-loopback target: $BASE_URL" >&2; exit 2 ;;
esac
# The token goes through the environment, not argv (argv is visible to every local user).
export SCIM_CLI_HEADERS="Authorization: Bearer $TOKEN"
timeout 600 scim2 --url "$BASE_URL" test --verbose > "$OUT/scim2-tester.txt" 2>&1
echo "scim2-tester exit=$?"
timeout 300 scim-sanity probe "$BASE_URL" --token "$TOKEN" --strict --i-accept-side-effects --timeout 30 \
  --json-output > "$OUT/scim-sanity.json" 2>&1
echo "scim-sanity exit=$?"
exit 0
