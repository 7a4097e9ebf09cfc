"""What the pages compute: the hourly charts (pure), and the engine's chart from its logs."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from identity_sync.clock import now_text
from identity_sync.config import Settings
from identity_sync.console.pages import ConsoleData, hourly_chart
from identity_sync.engine.jobs import Job
from identity_sync.engine.tables import engine_events
from identity_sync.storage.db import Database


def test_the_hourly_chart_has_24_bars_ending_with_the_current_hour_scaled_to_the_busiest() -> None:
    now = datetime(2026, 12, 5, 14, 30, tzinfo=UTC)
    values = {"2026-12-05T14": 10, "2026-12-05T13": 5, "2026-12-04T15": 1, "2026-12-04T14": 99}  # last: too old
    chart = hourly_chart("t", "c", values, {"2026-12-05T13": 3}, now)

    assert len(chart.bars) == 24
    assert (chart.bars[0].label, chart.bars[-1].label) == ("15:00", "14:00")
    assert chart.peak == 10 and chart.total == 16 and chart.total_failed == 3
    assert chart.bars[-1].height == chart.height
    assert (chart.bars[-2].height, chart.bars[-2].failed_height) == (chart.height / 2, chart.height * 3 / 10)
    assert chart.bars[0].x < chart.bars[1].x < chart.bars[-1].x < chart.width


def test_an_empty_chart_draws_flat_bars_without_dividing_by_zero() -> None:
    chart = hourly_chart("t", "c", {}, {}, datetime(2026, 12, 5, 0, 0, tzinfo=UTC))

    assert chart.total == 0 and chart.peak == 1 and {bar.height for bar in chart.bars} == {0}


def test_the_engine_chart_counts_provisioning_log_entries_and_their_failures(
        db: Database, settings: Settings, job: Job) -> None:
    with db.write() as conn:
        conn.execute(sa.insert(engine_events), [
            {"job_id": job.id, "cycle_id": "c1", "change_id": f"ch{i}", "at": now_text(), "object_type": "user",
             "source_id": f"u{i}", "source_name": f"User {i}", "action": "create",
             "status": "failure" if i < 2 else "success", "steps": [], "modified": [], "duration_ms": 3}
            for i in range(5)])

    charts = ConsoleData(db, settings).overview()["charts"]

    engine = next(chart for chart in charts if chart.title.startswith("Engine"))
    assert (engine.total, engine.total_failed) == (5, 2)
    assert (engine.bars[-1].value, engine.bars[-1].failed) == (5, 2)
