# Shared by scripts/serve and scripts/test: make .venv hold exactly the locked dependencies.
# Re-installs only when a lock file or pyproject.toml changed since the last run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        # Debian's python3 without python3-venv: fall back to virtualenv from PyPI.
        rm -rf .venv
        "$PYTHON" -m pip install --quiet --user virtualenv
        "$PYTHON" -m virtualenv --quiet .venv
    fi
fi
ensure_installed() {
    local lock=$1 stamp=".venv/.installed-$(basename "$1")"
    local want
    want=$(cat requirements.lock "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$lock"
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
        echo "$want" > "$stamp"
    fi
}
