"""Structured logging (structlog, one JSON object per line on stderr).

What we log is chosen so that no secret can reach a log: request lines carry method, path,
status and duration — never headers (credentials) nor query strings (filters carry personal
data); service events carry tenant, resource type and id. As a second line of defence, any
event field whose name suggests a secret is replaced before rendering.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

from identity_sync.clock import now_text

_SECRET_FIELDS = ("token", "secret", "password", "authorization")


@functools.lru_cache(maxsize=4096)
def _is_secret_field(key: str) -> bool:
    # Cached: the same few dozen field names come back on every line (this test per field and
    # line was ~5 % of a lookup's CPU); a bounded cache, since a field name could be anything.
    return any(word in key.lower() for word in _SECRET_FIELDS)


def _redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if _is_secret_field(key):
            event[key] = "[redacted]"
    return event


def _timestamp(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # structlog's TimeStamper(fmt="iso", utc=True) wrote the same text at three times the cost.
    event["timestamp"] = now_text()
    return event


def _json(event: dict[str, Any], **_: Any) -> str:
    # orjson: a third of the stdlib encoder's cost per line; values it does not know (an
    # exception, a path) are written as their str().
    return orjson.dumps(event, default=str).decode()


class _HandlerWriter:
    """structlog's final logger for our own events: the rendered line written straight into the
    root JSON handler's stream under that handler's lock. One stream, one lock (lines never
    interleave with the libraries' records), without a ``LogRecord``, a caller lookup and a second
    formatting pass per line — which cost a fifth of a create's CPU time (issue 11, item 6)."""

    def __init__(self, handler: logging.StreamHandler[Any], name: str) -> None:
        self._handler = handler
        self.name = name  # structlog.stdlib.add_logger_name reads it

    def msg(self, message: str) -> None:
        handler = self._handler
        handler.acquire()
        try:
            handler.stream.write(message + "\n")
            handler.stream.flush()
        except (OSError, ValueError):  # a closed stream: like logging, never fail the caller
            pass
        finally:
            handler.release()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _WriterFactory:
    def __init__(self, handler: logging.StreamHandler[Any]) -> None:
        self.handler = handler

    def __call__(self, *args: Any) -> _HandlerWriter:
        return _HandlerWriter(self.handler, str(args[0]) if args else "identity_sync")


#: Marks the root handler :func:`configure` installs, so that calling it again replaces it (and
#: only it: a test runner's handlers stay).
_OURS = "identity_sync_json"


def configure(level: str = "INFO") -> None:
    """JSON lines on stderr, for our events and for every library's (uvicorn, alembic, …), one
    line per write: one format for whatever reads the logs. Lines written while a request is served carry its
    ``request_id`` (bound by the access-log middleware, web/app.py)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamp,
    ]
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_OURS)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        # Records of the standard library's loggers: the same fields as ours, plus the logger's name.
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _redact,
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer(_json)],
    ))
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _OURS] + [handler]
    root.setLevel(numeric)
    logging.getLogger("alembic").setLevel(max(numeric, logging.WARNING))
    # The HTTP clients log every request line at INFO: a SCIM or Graph query carries personal data
    # in its filter (userName eq "…"), which never goes into a log (see above).
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    # Our events go into the same handler's stream under its lock (_HandlerWriter), not a writer
    # of their own: two writers on one stream, each with its own lock, interleaved lines under load.
    structlog.configure(
        processors=[*shared, structlog.stdlib.add_logger_name, _redact, structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(_json)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_WriterFactory(handler),
        cache_logger_on_first_use=True,
    )
