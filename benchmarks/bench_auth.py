"""Per-request authentication cost (µs) for a static bearer token, our OAuth access token (JWT,
signature cached after first use), an Entra-issued token, and an access token seen for the
first time (signature verified). Run: ``.venv/bin/python benchmarks/bench_auth.py``."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from identity_sync.auth import oauth
from identity_sync.config import Settings
from identity_sync.service.clients import Authenticator, ClientService
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from tests.auth import jwt_helpers as jh


def _time(fn, n: int = 3000) -> float:  # type: ignore[no-untyped-def]
    for _ in range(200):
        fn()
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(runs)


def main() -> None:
    directory = Path(tempfile.mkdtemp())
    settings = Settings(database_url=f"sqlite:///{directory}/a.db", data_dir=directory)
    db = Database(settings.resolved_database_url())
    db.migrate()
    static = TenantService(db).create_tenant("acme")
    clients = ClientService(db, settings)
    issued = clients.create_client("acme")
    clients.set_entra_trust("acme", jh.ENTRA_TID, jwks=jh.jwks())
    auth = Authenticator(db, settings, clients.keys)
    access = clients.issue_token("acme", oauth.TokenRequest(issued.client_id, issued.client_secret, None, False))
    entra = jh.sign(jh.entra_claims())
    results = {
        "static bearer": _time(lambda: auth.authenticate(f"Bearer {static.token}", "acme")),
        "OAuth access token (JWT)": _time(lambda: auth.authenticate(f"Bearer {access.access_token}", "acme")),
        "Entra-issued JWT": _time(lambda: auth.authenticate(f"Bearer {entra}", "acme")),
    }

    def cold() -> None:
        auth.cache = type(auth.cache)()
        auth.authenticate(f"Bearer {access.access_token}", "acme")

    results["OAuth access token, first use (RS256 verify)"] = _time(cold, 500)
    for name, micros in results.items():
        print(f"{name:48s} {micros:7.1f} µs")


if __name__ == "__main__":
    main()
