"""Per-request limits: the one place they are defined and checked.

Every check runs before the request does any work, and ``GetHostInfo``
reports the values (``Limits``). Replies stay within ``max_message`` by
construction: a BatchOneReg reply has at most ``max_batch_ops`` results of
at most ``BATCH_RESULT_BYTES`` each (ONE_REG values are at most 128 bytes,
KVM_REG_SIZE_U1024, and per-op error messages are cut to
``MAX_ERROR_MESSAGE`` characters), a memory reply at most ``max_transfer``
bytes of data.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from rvkvm.server.kvm import KvmError

# Longest vm_id accepted (bytes of UTF-8); longer ones are refused before
# any lookup, and errors show at most ID_SHOWN characters of an id.
MAX_ID_BYTES = 128
ID_SHOWN = 40

# A status message (and a batch item's KvmErrno.message) is cut to this
# many characters, so no error can outgrow the trailer limits.
MAX_ERROR_MESSAGE = 240
# Upper bound of one encoded RegResult: value (<= 128 bytes), errno, name
# and message with their tags and lengths.
BATCH_RESULT_BYTES = 128 + MAX_ERROR_MESSAGE * 4 + 64
# Room for the framing of a reply besides its payload.
REPLY_OVERHEAD = 4096


@dataclass(frozen=True)
class RequestLimits:
    # Largest ReadMemory/WriteMemory payload and stream chunk, in bytes.
    max_transfer: int = 1 << 20
    # Operations in one BatchOneReg.
    max_batch_ops: int = 1024
    # Largest request and reply message the server takes or sends.
    max_message: int = 4 << 20
    # Longest vm_id, in bytes.
    max_id_bytes: int = MAX_ID_BYTES

    def __post_init__(self) -> None:
        if self.max_transfer + REPLY_OVERHEAD > self.max_message:
            raise ValueError("max_transfer does not fit in max_message")
        if self.max_batch_ops * BATCH_RESULT_BYTES + REPLY_OVERHEAD > self.max_message:
            raise ValueError("max_batch_ops results do not fit in max_message")

    def check_transfer(self, size: int) -> None:
        if size > self.max_transfer:
            raise KvmError(errno.E2BIG, f"{size} bytes exceed the transfer limit "
                           f"{self.max_transfer}; use the streaming RPC")

    def check_batch(self, ops: int) -> None:
        if ops > self.max_batch_ops:
            raise KvmError(errno.E2BIG, f"{ops} operations exceed the batch limit "
                           f"{self.max_batch_ops}")

    def check_reply(self, size: int) -> None:
        """E2BIG for a reply of ``size`` payload bytes that would not fit."""
        if size + REPLY_OVERHEAD > self.max_message:
            raise KvmError(errno.E2BIG, f"a reply of {size} bytes exceeds the message "
                           f"limit {self.max_message}")
