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
# python-ldap (the LDAP source's library, in the dev lock) builds from source against OpenLDAP's
# and Cyrus SASL's headers. Without them the lock is installed without it, so that the two set-up
# commands work on a bare machine; the LDAP tests then skip (CI installs the headers: .ci/run).
ldap_headers() {
    { [ -f /usr/include/ldap.h ] || pkg-config --exists ldap 2>/dev/null; } && [ -f /usr/include/sasl/sasl.h ]
}
ensure_installed() {
    local lock=$1 stamp=".venv/.installed-$(basename "$1")"
    local want with_ldap=no
    if ! grep -q '^python-ldap==' "$lock" || ldap_headers; then with_ldap=yes; fi
    want=$( (cat requirements.lock "$lock" pyproject.toml; echo "ldap=$with_ldap") | sha256sum | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        if [ "$with_ldap" = yes ]; then
            .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$lock"
        else
            echo "note: no LDAP headers (apt-get install libldap2-dev libsasl2-dev): python-ldap is not" \
                 "installed and the LDAP source's tests skip" >&2
            local filtered
            filtered=$(mktemp)
            grep -v '^python-ldap==' "$lock" | sed "s#^-r #-r $PWD/#" > "$filtered"
            .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$filtered"
            rm -f "$filtered"
        fi
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
        echo "$want" > "$stamp"
    fi
}
