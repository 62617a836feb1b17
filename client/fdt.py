"""A tiny flattened device tree (DTB) writer (devicetree spec v0.4, ch. 5).

Build a tree of ``Node``s, then ``to_dtb()``. Property values: ``str``
(NUL-terminated string), ``int`` (one u32 cell), a list of ints (u32 cells),
``bytes`` (raw), ``True`` (an empty, flag-like property).
"""

from __future__ import annotations

import struct
from typing import Dict, List, Optional, Union

FDT_MAGIC = 0xD00DFEED
FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_END = 1, 2, 3, 9
FDT_VERSION, FDT_LAST_COMP_VERSION = 17, 16

Value = Union[str, int, List[int], bytes, bool]


class Node:
    """A device tree node: ``name`` ("" for the root, "cpu@0", ...),
    ``props`` (name -> value, see the module docstring) and children."""

    def __init__(self, name: str = "", props: Optional[Dict[str, Value]] = None) -> None:
        self.name = name
        self.props: Dict[str, Value] = dict(props or {})
        self.children: List[Node] = []

    def add(self, child: Node) -> Node:
        """Append ``child``; returns it."""
        self.children.append(child)
        return child


def _encode(value: Value) -> bytes:
    if value is True:
        return b""
    if isinstance(value, str):
        return value.encode() + b"\0"
    if isinstance(value, int):
        return struct.pack(">I", value)
    if isinstance(value, bytes):
        return value
    return b"".join(struct.pack(">I", cell) for cell in value)


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def to_dtb(root: Node, boot_cpuid: int = 0) -> bytes:
    """The DTB (version 17, empty memory reservation map) of ``root``, for
    the guest's a1 at boot."""
    strings = bytearray()
    offsets: Dict[str, int] = {}
    body = bytearray()

    def string_offset(name: str) -> int:
        if name not in offsets:
            offsets[name] = len(strings)
            strings.extend(name.encode() + b"\0")
        return offsets[name]

    def emit(node: Node) -> None:
        body.extend(struct.pack(">I", FDT_BEGIN_NODE) + _pad4(node.name.encode() + b"\0"))
        for name, value in node.props.items():
            data = _encode(value)
            body.extend(struct.pack(">III", FDT_PROP, len(data), string_offset(name)))
            body.extend(_pad4(data))
        for child in node.children:
            emit(child)
        body.extend(struct.pack(">I", FDT_END_NODE))

    emit(root)
    body.extend(struct.pack(">I", FDT_END))
    header_size = 40
    rsvmap = b"\0" * 16  # empty memory reservation map (one terminating entry)
    off_rsvmap = header_size
    off_struct = off_rsvmap + len(rsvmap)
    off_strings = off_struct + len(body)
    total = off_strings + len(strings)
    header = struct.pack(">10I", FDT_MAGIC, total, off_struct, off_strings, off_rsvmap,
                         FDT_VERSION, FDT_LAST_COMP_VERSION, boot_cpuid, len(strings), len(body))
    return header + rsvmap + bytes(body) + bytes(strings)
