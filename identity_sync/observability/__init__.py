"""Observability (docs/observability.md): what the HTTP layer learns about each request
(``context``), the Prometheus metrics (``metrics``) and the readiness checks (``readiness``)."""
