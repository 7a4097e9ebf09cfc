"""One writer at a time across the processes that share a SQLite file, the serving ones first.

SQLite lets one transaction write at a time; a process that finds the file locked polls for it
with its busy handler, sleeping 1, 2, 5 … up to 100 ms between tries. Within a process, writers
queue on group commit instead (group_commit.py). Between processes — the workers of
``serve --workers N``, and the child serving costly requests (web/offload.py) — they polled: a
child running a 1,000-operation bulk commits back to back, and a lookup that had to record its
token's use waited 0.3–2.3 s for a gap (benchmarks/fairness.py's worst samples).

So the batch leader of every process takes an exclusive ``flock`` on ``<file>.write-turn`` before
``BEGIN IMMEDIATE`` and releases it after the commit: the kernel hands it to a waiting process the
moment it is free. A process whose writes may wait (``yields``: the costly child) first waits until
no serving process is waiting: serving writers hold ``<file>.write-waiting`` shared while they
wait for the turn, and a yielding writer takes it exclusively, for a moment, before its own turn.
A serving writer therefore waits for at most the one transaction in progress. Locks held by a
process that dies are released with its files. Processes that do not take part (a CLI command)
still meet the others through SQLite's lock and busy timeout.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class WriteTurn:
    def __init__(self, file: Path, *, yields: bool = False) -> None:
        self.file = file
        self.yields = yields
        self._files: tuple[int, int] | None = None  # opened on first use, again after close()

    def acquire(self) -> None:
        """Blocks until this process may write. Called by one thread of the process at a time
        (group commit's leader): a ``flock`` belongs to the open file, shared by its threads."""
        if self._files is None:
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
            self._files = (os.open(f"{self.file}.write-turn", flags, 0o600),
                           os.open(f"{self.file}.write-waiting", flags, 0o600))
        turn, waiting = self._files
        if self.yields:
            fcntl.flock(waiting, fcntl.LOCK_EX)  # granted once no serving writer waits
            fcntl.flock(waiting, fcntl.LOCK_UN)
            fcntl.flock(turn, fcntl.LOCK_EX)
            return
        fcntl.flock(waiting, fcntl.LOCK_SH)
        try:
            fcntl.flock(turn, fcntl.LOCK_EX)
        finally:
            fcntl.flock(waiting, fcntl.LOCK_UN)

    def release(self) -> None:
        if self._files is not None:  # closed meanwhile (dispose): closing released it
            fcntl.flock(self._files[0], fcntl.LOCK_UN)

    def close(self) -> None:
        """Closes the files (releasing a turn still held); the next acquire() opens them again."""
        files, self._files = self._files, None
        for fd in files or ():
            try:
                os.close(fd)
            except OSError:  # closed already
                pass
