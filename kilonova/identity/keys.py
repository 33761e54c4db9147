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
    """Create the repository with a staged and a primary key the first time; keep existing keys."""
    path = Path(repository)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    for name in ("0", "1"):
        if not (path / name).exists():
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
