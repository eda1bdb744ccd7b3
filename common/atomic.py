"""The one way lstm-sweep writes a file or a folder: whole or not at all, on disk, readable.

Every writer of the project (run folders, the data cache, exports) goes through here::

    temporary name beside the target (same folder, so same file system; a hidden dot-name
    with the writer's pid: ``.trials.csv.<pid>.<random>.tmp``)
      -> write, flush, fsync            the bytes are on disk before the name points at them
      -> os.replace onto the target     atomic: a reader sees the old file or the new one
      -> fsync the folder               the rename itself survives a power cut
      -> on any failure (an error, ENOSPC, Ctrl-C) the temporary is removed and the error raised

A new file gets the mode a plain ``open(path, "w")`` would give it (``0o666`` less the umask,
so 0644 as a rule; ``tempfile.mkstemp`` would give 0600, which a model server running as
another user cannot read); a folder gets ``0o777`` less the umask. Missing parent folders are
created. A writer killed outright (SIGKILL) can leave its temporary behind, never a torn
target: :func:`remove_leftovers` clears those of processes that no longer run.

This module is the package root's, beside ``errors.py``: every layer (``data_pipeline``,
``model``, ``results``, ``search``) may import it, and it imports nothing of theirs.

Example:
    >>> write_text("runs/quick/sweep.yaml", "name: quick\\n")  # doctest: +SKIP
    >>> with replacing_file("runs/quick/winner/best.keras") as tmp:  # doctest: +SKIP
    ...     model.save(tmp)  # a library that wants a path writes to the temporary
    >>> with replacing_dir("runs/quick/winner/export/saved_model") as tmp:  # doctest: +SKIP
    ...     archive.write_out(tmp)
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Iterator

_LEFTOVER = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp(\.[^.]+)?$")
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)  # the disk, not our bug


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably; return the path.

    Example:
        >>> write_bytes("runs/x/blob.bin", b"\\x00\\x01")  # doctest: +SKIP
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"data must be bytes, got {type(data).__name__}")
    with replacing_file(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically and durably.

    Example:
        >>> write_text("runs/quick/sweep.yaml", "name: quick\\n")  # doctest: +SKIP
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def replacing_file(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` for the caller to write (a library that takes a file
    name: Keras' ``model.save``, ``np.savez``); when the block ends without an error the file is
    fsynced and renamed onto ``path``, else removed. ``suffix`` ends the temporary name (Keras
    wants ``.keras``). The temporary exists (empty, mode 0666 less the umask) when the block starts.

    Example:
        >>> with replacing_file("winner/best.keras", suffix=".keras") as tmp:  # doctest: +SKIP
        ...     model.save(tmp)
    """
    path = _target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, suffix)
    try:
        # os.open applies the umask, unlike tempfile.mkstemp's fixed 0600.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def replacing_dir(path: str | Path) -> Iterator[Path]:
    """A new empty folder beside ``path`` for the caller to fill (a SavedModel); when the block
    ends without an error every file in it is fsynced and it takes the place of ``path`` (an
    old folder there is moved aside first, then deleted), else it is deleted.

    The swap is two renames: a crash between them leaves the old folder under a hidden name
    beside ``path`` and no ``path``, never a mix of the two; write it again.

    Example:
        >>> with replacing_dir("export/saved_model") as tmp:  # doctest: +SKIP
        ...     tf.saved_model.save(module, str(tmp))
    """
    path = _target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    old = None
    try:
        os.mkdir(tmp, 0o777)  # the umask applies: 0755 as a rule, not mkdtemp's 0700
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                _fsync_file(Path(folder) / name)
            fsync_dir(folder)
        if path.is_dir() and not path.is_symlink():
            old = _temporary(path, ".old")
            os.rename(path, old)
        elif path.exists() or path.is_symlink():
            path.unlink()
        os.rename(tmp, path)
    except BaseException:
        _remove(tmp)
        if old is not None and not path.exists():
            os.rename(old, path)  # the old folder back where it was
            old = None
        raise
    fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (new names, renames) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems do not fsync folders
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Delete the temporaries in ``folder`` (not below it) that writers killed outright left
    behind: those whose pid no longer runs on this machine. Returns what it removed.

    Example:
        >>> remove_leftovers("runs/quick")  # doctest: +SKIP
        [PosixPath('runs/quick/.trials.csv.4242.0a1b2c3d.tmp')]
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _LEFTOVER.match(entry.name)
        if match and not _running(int(match.group(1))):
            _remove(entry)
            removed.append(entry)
    return removed


def is_disk_error(error: BaseException) -> bool:
    """Whether ``error`` is the disk's (full, over quota, read-only, file too large), not a bug."""
    return isinstance(error, OSError) and error.errno in DISK_ERRORS


def _target(path: str | Path) -> Path:
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise ValueError(f"path={str(path)!r} must name a file or folder")
    return path


def _temporary(path: Path, suffix: str = "") -> Path:
    # A unique dot-name per writer: two processes writing one target never share a temporary,
    # and a leftover (after kill -9) is hidden and names the pid that left it.
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
