"""A flattened device tree reader for tests (the spec's structure block:
FDT_BEGIN_NODE 1, FDT_END_NODE 2, FDT_PROP 3, FDT_NOP 4, FDT_END 9)."""

from __future__ import annotations

import struct
from typing import Any, Dict

MAGIC = 0xD00DFEED


def parse_dtb(blob: bytes) -> Dict[str, Any]:
    """{node path: {property: raw bytes}}, paths like "/" and "/cpus/cpu@0"."""
    magic, total, off_struct, off_strings, _, version, _, _, size_strings, size_struct = \
        struct.unpack_from(">10I", blob)
    if magic != MAGIC or total != len(blob) or version < 17:
        raise ValueError("not a version 17 DTB")
    strings = blob[off_strings:off_strings + size_strings]
    nodes: Dict[str, Dict[str, bytes]] = {}
    path = []
    pos, end = off_struct, off_struct + size_struct
    while pos < end:
        (token,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if token == 1:
            name_end = blob.index(b"\0", pos)
            path.append(blob[pos:name_end].decode())
            pos = (name_end + 4) & ~3
            nodes["/" + "/".join(p for p in path if p)] = {}
        elif token == 2:
            path.pop()
        elif token == 3:
            length, name_off = struct.unpack_from(">II", blob, pos)
            pos += 8
            name = strings[name_off:strings.index(b"\0", name_off)].decode()
            nodes["/" + "/".join(p for p in path if p)][name] = blob[pos:pos + length]
            pos = (pos + length + 3) & ~3
        elif token == 4:
            continue
        elif token == 9:
            return nodes
        else:
            raise ValueError(f"bad token {token} at {pos - 4}")
    raise ValueError("no FDT_END")


def cells(raw: bytes) -> list:
    return list(struct.unpack(f">{len(raw) // 4}I", raw))
