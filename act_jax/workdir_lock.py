"""One process at a time in a workdir: an advisory lock on `<workdir>/.lock`.

    with lock_workdir(workdir, "training"):
        ...  # checkpoints, metrics.jsonl

The lock is `flock` on an open file, so the kernel releases it when the holder exits, however it
exits (a crash or SIGKILL leaves no stale lock to clean up). The file holds the holder's pid and
what it is doing, which a second process names in its one-line error. Local filesystems only:
`flock` over NFS is not reliable, and a multi-host run locks on process 0 only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"


class WorkdirBusy(RuntimeError):
    """Another live process holds the workdir."""


@contextlib.contextmanager
def lock_workdir(workdir: str | os.PathLike, what: str) -> Iterator[Path]:
    """Holds `<workdir>/.lock` for the block; `WorkdirBusy` names the holder if it is taken."""
    path = Path(workdir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "a process that has not written its pid yet"
            raise WorkdirBusy(
                f"{workdir} is in use: {holder}; wait for it to finish, or use another workdir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} ({what})\n")
        f.flush()
        try:
            yield path
        finally:
            f.seek(0)
            f.truncate()  # the lock goes with the file's close; an empty file says "free"
