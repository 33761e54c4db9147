"""Owner-only files and directories for everything the state directory holds.

The state directory holds password hashes, Fernet keys, key pairs, user data and private image bytes: no
other local user may read any of it. Files are created 0600 and directories 0700 from the start (not via
the process umask: the libvirt driver's guest files must stay readable by QEMU's user), and a state
directory written by an older release is tightened when a service starts on it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

FILE_MODE = 0o600
DIR_MODE = 0o700
# A directory other users may pass through but not list: the way to a directory they must reach.
PASSAGE_MODE = 0o711


def private_dir(path: str | os.PathLike) -> Path:
    """``path`` as an existing directory, owner-only when this call created it."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for created in missing:
        os.chmod(created, DIR_MODE)
    return path


def private_file(path: str | os.PathLike) -> Path:
    """``path`` as an existing file, created empty and owner-only when missing."""
    path = Path(path)
    private_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    return path


def open_private(path: str | os.PathLike, mode: str = "wb"):
    """A new file opened for writing, owner-only from the moment it exists."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, FILE_MODE), mode)


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def tighten(root: str | os.PathLike, leave_open: Iterable[str | os.PathLike] = ()) -> None:
    """Make ``root`` and everything under it owner-only (directories 0700, files 0600).

    ``leave_open`` are directories other users must reach (the libvirt driver's instances, which QEMU
    opens as its own user): they and what they hold keep their modes, and the directories on the way to
    them become 0711, passable without being listable. Symbolic links are not followed.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        return
    kept = [Path(p).resolve() for p in leave_open]
    kept = [p for p in kept if _inside(p, root)]
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        passage = any(here in p.parents for p in kept)
        _chmod(here, PASSAGE_MODE if passage else DIR_MODE)
        dirnames[:] = [name for name in dirnames if here / name not in kept]
        for name in filenames:
            _chmod(here / name, FILE_MODE)


def _chmod(path: Path, mode: int) -> None:
    try:
        if not path.is_symlink() and (path.stat().st_mode & 0o777) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:   # removed meanwhile (a SQLite -shm file, a finished upload)
        pass
