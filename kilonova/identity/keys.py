"""The Fernet key repository, laid out as Keystone's: files named 0 (staged), 1..N (N is primary)."""
from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet


def _write_key(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(Fernet.generate_key())


def ensure_keys(repository: str | os.PathLike) -> Path:
    """Create the repository with a staged (0) and a primary (1) key when it has none; keep existing keys."""
    path = Path(repository)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    if not any(p.name.isdigit() for p in path.iterdir()):
        for name in ("0", "1"):
            _write_key(path / name)
    return path


def load_keys(repository: str | os.PathLike) -> MultiFernet:
    """Every key of the repository, primary (highest number) first."""
    path = Path(repository)
    indexes = sorted((int(p.name) for p in path.iterdir() if p.name.isdigit()), reverse=True)
    if not indexes:
        raise RuntimeError(f"no Fernet keys in {path}; the identity service creates them in prepare()")
    primary_first = [i for i in indexes if i != 0] + ([0] if 0 in indexes else [])
    return MultiFernet([Fernet((path / str(i)).read_bytes().strip()) for i in primary_first])


def rotate_keys(repository: str | os.PathLike, max_active_keys: int = 3) -> None:
    """keystone-manage fernet_rotate: the staged key becomes primary, a new staged key is made,
    and the oldest secondary keys beyond ``max_active_keys`` are removed."""
    path = ensure_keys(repository)
    indexes = sorted(int(p.name) for p in path.iterdir() if p.name.isdigit())
    newest = max(indexes)
    os.replace(path / "0", path / str(newest + 1))
    _write_key(path / "0")
    secondaries = sorted(i for i in indexes if i != 0)
    for index in secondaries[:max(0, len(secondaries) + 2 - max_active_keys)]:
        (path / str(index)).unlink()
