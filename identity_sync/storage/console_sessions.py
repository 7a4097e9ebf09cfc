"""The console's sessions and failed logins as rows (console/auth.py says what they mean and when
they expire): the statements only, on a connection the caller's transaction holds."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from identity_sync.storage.tables import console_login_failures, console_sessions


def open_session(conn: Connection, *, ended_if_seen_before: float, ended_if_created_before: float,
                 **row: Any) -> None:
    """Delete every expired session (idle, or begun too long ago), then insert ``row``."""
    c = console_sessions.c
    conn.execute(sa.delete(console_sessions).where(sa.or_(
        c.seen_at < ended_if_seen_before, c.created_at < ended_if_created_before)))
    conn.execute(sa.insert(console_sessions).values(**row))


def session_row(conn: Connection, key: str) -> Any:
    """The session row keyed ``key`` (the digest of its id), or ``None``."""
    return conn.execute(sa.select(console_sessions).where(console_sessions.c.id == key)).first()


def touch_session(conn: Connection, key: str, now: float) -> None:
    conn.execute(sa.update(console_sessions).where(console_sessions.c.id == key).values(seen_at=now))


def delete_session(conn: Connection, key: str) -> None:
    conn.execute(sa.delete(console_sessions).where(console_sessions.c.id == key))


def recent_failures(conn: Connection, client: str, name_digest: str, since: float, pair_limit: int,
                    address_limit: int) -> tuple[list[float], list[float]]:
    """When the newest failures after ``since`` happened, newest first: at most ``pair_limit`` of
    ``name_digest`` from ``client``, and at most ``address_limit`` from ``client`` whatever the name."""
    t = console_login_failures.c
    pair = conn.execute(sa.select(t.at).where(t.client == client, t.name_digest == name_digest, t.at > since)
                        .order_by(t.at.desc()).limit(pair_limit)).scalars().all()
    address = conn.execute(sa.select(t.at).where(t.client == client, t.at > since)
                           .order_by(t.at.desc()).limit(address_limit)).scalars().all()
    return list(pair), list(address)


def record_failure(conn: Connection, name_digest: str, client: str, at: float, forget_before: float) -> None:
    """A failed login, after forgetting every failure older than ``forget_before``."""
    t = console_login_failures.c
    conn.execute(sa.delete(console_login_failures).where(t.at < forget_before))
    conn.execute(sa.insert(console_login_failures).values(name_digest=name_digest, client=client, at=at))


def unname_failures(conn: Connection, name_digest: str, client: str) -> None:
    """The failures of ``name_digest`` from ``client`` no longer count for the name (a success),
    but still for the address: kept under no name."""
    t = console_login_failures.c
    conn.execute(sa.update(console_login_failures).where(t.client == client, t.name_digest == name_digest)
                 .values(name_digest="-"))
