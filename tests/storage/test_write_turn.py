"""Writers of several processes sharing a SQLite file take turns on a file lock (write_turn.py):
one at a time; a yielding writer (the costly child) does not start a turn while a serving writer
waits; a turn held by a process that dies is free again. Each WriteTurn opens the files itself, so
two of them in one process lock each other out exactly as two processes would (flock)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from identity_sync.storage.write_turn import WriteTurn


def _acquire_in_thread(turn: WriteTurn, order: list[str], name: str) -> threading.Thread:
    def run() -> None:
        turn.acquire()
        order.append(name)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    first, second = WriteTurn(tmp_path / "db"), WriteTurn(tmp_path / "db")
    first.acquire()
    order: list[str] = []
    waiting = _acquire_in_thread(second, order, "second")
    time.sleep(0.2)
    assert order == []  # still waiting
    first.release()
    waiting.join(5)
    assert order == ["second"]
    second.release()
    for turn in (first, second):
        turn.close()


def test_a_yielding_writer_lets_a_waiting_serving_writer_go_first(tmp_path: Path) -> None:
    holder, serving, child = WriteTurn(tmp_path / "db"), WriteTurn(tmp_path / "db"), WriteTurn(tmp_path / "db",
                                                                                               yields=True)
    holder.acquire()
    order: list[str] = []
    serving_thread = _acquire_in_thread(serving, order, "serving")
    time.sleep(0.2)  # the serving writer now waits for the turn, holding the waiting gate shared
    child_thread = _acquire_in_thread(child, order, "child")
    time.sleep(0.2)
    holder.release()
    serving_thread.join(5)
    time.sleep(0.2)
    assert order == ["serving"]  # the child waits for the serving writer's turn to end
    serving.release()
    child_thread.join(5)
    assert order == ["serving", "child"]
    child.release()
    for turn in (holder, serving, child):
        turn.close()


def test_a_turn_held_by_a_process_that_dies_is_free(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from identity_sync.storage.write_turn import WriteTurn; "
        f"t = WriteTurn(Path({str(tmp_path / 'db')!r})); t.acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        mine = WriteTurn(tmp_path / "db")
        order: list[str] = []
        waiting = _acquire_in_thread(mine, order, "mine")
        time.sleep(0.2)
        assert order == []
        holder.kill()
        waiting.join(5)
        assert order == ["mine"]
        mine.release()
        mine.close()
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


def test_close_releases_and_the_next_acquire_opens_again(tmp_path: Path) -> None:
    first, second = WriteTurn(tmp_path / "db"), WriteTurn(tmp_path / "db")
    first.acquire()
    first.close()  # as Database.dispose() does
    second.acquire()  # not blocked: closing released the turn
    second.release()
    first.acquire()  # files opened again
    first.release()
    for turn in (first, second):
        turn.close()
    assert (tmp_path / "db.write-turn").stat().st_mode & 0o777 == 0o600
