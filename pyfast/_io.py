"""Durable file replacement for every save in pyfast: write a temp file beside the target, fsync it, os.replace it
over the target, fsync the directory. A reader (or a process restarted after SIGKILL or a power cut) then sees
the old file or the new one, never a mix; without the directory fsync the rename itself may not survive a crash.
"""
from __future__ import annotations

import os


def fsync_dir(directory: str) -> None:
    """fsync a directory so a rename inside it is on disk. Filesystems that refuse it (some network mounts) are
    skipped: the rename is still atomic there, only its durability across a power loss is theirs to give."""
    fd = os.open(directory or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    """fsync a file another library wrote and closed (torch.save, safetensors)."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def replace(tmp: str, path: str) -> None:
    """Rename the finished, fsynced ``tmp`` over ``path`` and make the rename durable."""
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def temp_name(path: str) -> str:
    """The temp file beside ``path`` (same directory, so os.replace is a rename, never a copy)."""
    return f"{path}.tmp.{os.getpid()}"


def remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def atomic_write(path, write, text: bool = False) -> None:
    """Write through ``write(fileobj)`` (binary; text in UTF-8 when ``text``) into a temp file beside ``path``, then
    replace ``path`` by it durably. On any exception (KeyboardInterrupt included) the temp file is removed and
    ``path`` is untouched."""
    path = os.fspath(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") if text else open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


def atomic_save_with(path, save) -> None:
    """Like atomic_write for a library that writes to a path itself: ``save(tmp_path)``, then fsync and replace."""
    path = os.fspath(path)
    tmp = temp_name(path)
    try:
        save(tmp)
        fsync_file(tmp)
        replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
