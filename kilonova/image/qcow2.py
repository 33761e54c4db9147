"""Tiny qcow2 images: build an empty one, and read the virtual size of an uploaded one.

An empty qcow2 (version 3) needs four clusters: the header, the refcount table,
one refcount block and the L1 table. No L2 tables and no data clusters: every
guest read returns zeros, which is all a test image must do.
"""
from __future__ import annotations

import struct

MAGIC = b"QFI\xfb"
HEADER_V3_LENGTH = 104
_HEADER = struct.Struct(">4sIQIIQIIQQIIQ")   # the version 2 part, 72 bytes
_HEADER_V3 = struct.Struct(">QQQII")          # feature bits, refcount_order, header_length


def empty_image(virtual_size: int = 1 << 30, cluster_bits: int = 16) -> bytes:
    """An empty qcow2 v3 image of ``virtual_size`` bytes (256 KiB on disk with 64 KiB clusters)."""
    cluster = 1 << cluster_bits
    l2_entries = cluster // 8
    l1_size = max(1, -(-virtual_size // (cluster * l2_entries)))
    if l1_size * 8 > cluster:
        raise ValueError("virtual size too large for a single-cluster L1 table")
    refcount_table, refcount_block, l1_table = cluster, 2 * cluster, 3 * cluster
    header = _HEADER.pack(MAGIC, 3, 0, 0, cluster_bits, virtual_size, 0, l1_size, l1_table,
                          refcount_table, 1, 0, 0)
    header += _HEADER_V3.pack(0, 0, 0, 4, HEADER_V3_LENGTH)
    header += struct.pack(">II", 0, 0)  # end of header extensions
    clusters = [header.ljust(cluster, b"\0"),
                struct.pack(">Q", refcount_block).ljust(cluster, b"\0"),
                struct.pack(">4H", 1, 1, 1, 1).ljust(cluster, b"\0"),  # refcount_order 4: 16-bit counts
                bytes(cluster)]                                           # L1: every entry unallocated
    return b"".join(clusters)


def virtual_size(head: bytes) -> int | None:
    """The virtual size recorded in a qcow2 header, or None when ``head`` is not one."""
    if len(head) < _HEADER.size or not head.startswith(MAGIC):
        return None
    fields = _HEADER.unpack_from(head)
    if fields[1] not in (2, 3):
        return None
    return fields[5]
