"""Exceptions that end a block or a run, and the result of a run."""

from __future__ import annotations

from typing import Optional


class Trap(Exception):
    """A synchronous exception raised by the instruction at ``pc``."""

    def __init__(self, cause: int, tval: int = 0, pc: int = 0) -> None:
        super().__init__(cause, tval, pc)
        self.cause = cause
        self.tval = tval
        self.pc = pc


class GuestExit(Exception):
    """Raised from a memory access (for example an MMIO handler that needs
    the host to answer) to stop the hart *before* the instruction at ``pc``
    completes; resuming re-executes that instruction. The hart fills in
    ``pc`` on the way out."""

    pc = 0


class CodeModified(Exception):
    """A store at ``pc`` completed and wrote a page holding translated code:
    the running block must stop after it."""

    def __init__(self, pc: int) -> None:
        super().__init__(pc)
        self.pc = pc


class StepInstead(Exception):
    """A translated block reached an access that must run with an exact
    instruction count (device MMIO): the block stops before the instruction
    at ``pc`` and the interpreter executes it."""

    def __init__(self, pc: int = 0) -> None:
        super().__init__(pc)
        self.pc = pc


class Stop:
    """Why :meth:`Hart.run` returned.

    reasons: ``budget`` (instruction budget used up), ``trap`` (a trap that
    would enter M-mode while ``intercept_mtraps`` is set: ``cause``,
    ``tval``, ``interrupt``; pc is the trapping instruction), ``wfi`` (the
    hart waits for an interrupt that no local timer will raise), ``kick``
    (:meth:`Hart.kick` was called), ``exit`` (a :class:`GuestExit` from a
    device: ``event``), ``halt`` (the machine asked the hart to stop, e.g.
    HTIF exit).
    """

    __slots__ = ("reason", "cause", "tval", "interrupt", "event")

    def __init__(self, reason: str, cause: int = 0, tval: int = 0, interrupt: bool = False,
                 event: Optional[BaseException] = None) -> None:
        self.reason = reason
        self.cause = cause
        self.tval = tval
        self.interrupt = interrupt
        self.event = event

    def __repr__(self) -> str:
        if self.reason == "trap":
            kind = "interrupt" if self.interrupt else "exception"
            return f"<Stop trap {kind} cause={self.cause} tval={self.tval:#x}>"
        return f"<Stop {self.reason}>"
