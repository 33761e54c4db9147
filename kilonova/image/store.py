"""The filesystem store: image data lives in ``[glance_store] filesystem_store_datadir/<image id>``.

Writes go to a temporary file beside the final one, hashing as they go (md5 for
``checksum``, sha512 for ``os_hash_value``), and are renamed into place only
when complete, so a crash never leaves a half-written image that looks whole.
Blocking file work runs in worker threads; the event loop only awaits it.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from kilonova.common.private_files import open_private, private_dir

CHUNK = 64 * 1024
HASH_ALGO = "sha512"


class SizeLimitExceeded(Exception):
    pass


@dataclass
class StoredData:
    size: int
    checksum: str
    os_hash_algo: str
    os_hash_value: str
    head: bytes  # the first bytes, for format inspection (qcow2 virtual size)


class _Writer:
    def __init__(self, path: Path, limit: int, inspector=None):
        self.path = path
        self.inspector = inspector  # an image_safety.StreamInspector: the data is refused before it is kept
        self.tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.part")
        self.limit = limit
        self.size = 0
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha = hashlib.new(HASH_ALGO)
        self.head = b""
        self.fh = open_private(self.tmp)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise SizeLimitExceeded(self.size)
        if len(self.head) < 512:
            self.head += chunk[:512 - len(self.head)]
        self.md5.update(chunk)
        self.sha.update(chunk)
        if self.inspector is not None:
            self.inspector.feed(chunk)
        self.fh.write(chunk)

    def commit(self) -> StoredData:
        if self.inspector is not None:
            self.inspector.verdict()  # UnsafeImage: the caller's abort removes the data
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)
        return StoredData(self.size, self.md5.hexdigest(), HASH_ALGO, self.sha.hexdigest(), self.head)

    def abort(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


def _write(writer: _Writer | None, path: Path, limit: int, chunks: list[bytes], commit: bool, inspector=None):
    """In a worker thread: ``chunks`` written (the file opened first when ``writer`` is None), then the
    writer, or with ``commit`` the stored data; a failure here removes the partial file."""
    writer = writer or _Writer(path, limit, inspector)
    try:
        for chunk in chunks:
            writer.write(chunk)
        return writer.commit() if commit else writer
    except BaseException:
        writer.abort()
        raise


class FilesystemStore:
    def __init__(self, datadir: str | os.PathLike, size_cap: int):
        self.datadir = Path(datadir)
        self.size_cap = size_cap

    def prepare(self) -> None:
        private_dir(self.datadir)

    def path(self, image_id: str) -> Path:
        return self.datadir / image_id

    async def save(self, image_id: str, chunks: AsyncIterator[bytes], inspector=None) -> StoredData:
        """Stream ``chunks`` into the store; raises ``SizeLimitExceeded`` past ``size_cap``, and the
        ``inspector``'s ``UnsafeImage`` (kilonova/common/image_safety.py) when it refuses the data.

        Chunks are gathered up to ``CHUNK`` bytes before a worker thread writes them: each hand-off to a
        thread costs more than the write of a small image (every shelve uploads one), which is now one.
        """
        path, writer, pending, pending_size, size = self.path(image_id), None, [], 0, 0
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > self.size_cap:
                    raise SizeLimitExceeded(size)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= CHUNK:
                    writer = await asyncio.to_thread(_write, writer, path, self.size_cap, pending, False, inspector)
                    pending, pending_size = [], 0
            return await asyncio.to_thread(_write, writer, path, self.size_cap, pending, True, inspector)
        except BaseException:
            if writer is not None:
                await asyncio.to_thread(writer.abort)
            raise

    def save_bytes(self, image_id: str, data: bytes) -> StoredData:
        """Synchronous save for bootstrap code running in a worker thread."""
        writer = _Writer(self.path(image_id), self.size_cap)
        try:
            writer.write(data)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def exists(self, image_id: str) -> bool:
        return self.path(image_id).is_file()

    async def read(self, image_id: str) -> AsyncIterator[bytes]:
        fh = await asyncio.to_thread(open, self.path(image_id), "rb")
        try:
            while True:
                chunk = await asyncio.to_thread(fh.read, CHUNK)
                if not chunk:
                    return
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)

    async def delete(self, image_id: str) -> None:
        await asyncio.to_thread(self.path(image_id).unlink, True)
