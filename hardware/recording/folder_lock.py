"""One process at a time in a folder: an advisory lock on `<folder>/.lock`.

    with lock_folder(out_dir, "recording 50 episodes"):
        ...  # episode files (hardware.record), or checkpoints and metrics.jsonl (act_jax.train)

The lock is `flock` on an open file, so the kernel releases it when the holder exits, however it
exits (a crash or SIGKILL leaves no stale lock to clean up). The file holds the holder's pid and
what it is doing, which a second process names in its one-line error. Local filesystems only:
`flock` over NFS is not reliable, and a multi-host training locks on process 0 only.

Here, in the recording package, because both the recorder and the trainer lock their folders and
`hardware` never imports `act_jax` (the trainer already imports `hardware.recording.episodes`).
Standard library only, as the package docstring asks.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"


class FolderBusy(RuntimeError):
    """Another live process holds the folder."""


@contextlib.contextmanager
def lock_folder(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Holds `<folder>/.lock` for the block (creating the folder); `FolderBusy` names the holder.

    Args:
      folder: the workdir or episode folder; created if missing.
      what: what the holder does, e.g. "training to step 1000": shown to a second process.
    """
    path = Path(folder) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "a process that has not written its pid yet"
            raise FolderBusy(
                f"{folder} is in use: {holder}; wait for it to finish, or use another folder"
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
