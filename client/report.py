"""What a VMM prints when a guest fails: the exit or the failed KVM_RUN,
pc, the last trap (cause by name, sepc, stval, scause), ra, sp and the
privilege, as QEMU's and kvmtool's register dumps do.

``describe_crash`` takes the registers by their ONE_REG names (``CRASH_REGS``)
and gives the lines; the first says in words what happened.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from . import exits as X

CRASH_REGS = ("core pc", "core ra", "core sp", "core mode", "csr sstatus", "csr stvec",
              "csr sepc", "csr scause", "csr stval")

SCAUSE_INTERRUPT = 1 << 63
# scause exception codes (privileged spec, table "Supervisor cause register values").
EXCEPTIONS = {
    0: "instruction address misaligned", 1: "instruction access fault",
    2: "illegal instruction", 3: "breakpoint", 4: "load address misaligned",
    5: "load access fault", 6: "store/AMO address misaligned", 7: "store/AMO access fault",
    8: "environment call from U-mode", 9: "environment call from S-mode",
    12: "instruction page fault", 13: "load page fault", 15: "store/AMO page fault",
    18: "software check", 19: "hardware error",
}
INTERRUPTS = {1: "supervisor software interrupt", 5: "supervisor timer interrupt",
              9: "supervisor external interrupt", 13: "counter overflow interrupt"}
# KVM_RISCV_MODE_* of the ONE_REG "core mode" register (asm/kvm.h).
MODES = {0: "U", 1: "S"}


def cause_name(scause: int) -> str:
    """``scause`` in words: "illegal instruction", "supervisor timer interrupt"."""
    code = scause & ~SCAUSE_INTERRUPT
    if scause & SCAUSE_INTERRUPT:
        return INTERRUPTS.get(code, f"interrupt {code}")
    return EXCEPTIONS.get(code, f"exception {code}")


def describe_exit(exit_: X.Exit) -> str:
    """An exit in words (for the ones that end a run)."""
    if isinstance(exit_, X.FailEntryExit):
        return (f"KVM_EXIT_FAIL_ENTRY (hardware_entry_failure_reason "
                f"{exit_.hardware_entry_failure_reason:#x}, cpu {exit_.cpu})")
    if isinstance(exit_, X.InternalErrorExit):
        text = f"KVM_EXIT_INTERNAL_ERROR (suberror {exit_.suberror})"
        return f"{text}: {exit_.message}" if exit_.message else text
    if isinstance(exit_, X.DebugExit):
        return "KVM_EXIT_DEBUG"
    if isinstance(exit_, X.CsrExit):
        return f"KVM_EXIT_RISCV_CSR (csr {exit_.csr_num:#x}) the VMM does not serve"
    return f"exit reason {exit_.reason} the VMM does not serve"


def describe_crash(regs: Dict[str, int], error: Optional[Exception] = None,
                   exit_: Optional[X.Exit] = None) -> List[str]:
    """Lines about a failed guest from its registers (missing ones are
    left out): what ended the run, the trap that led there, the registers."""
    what = f"KVM_RUN failed: {error}" if error is not None else (
        describe_exit(exit_) if exit_ is not None else "the guest stopped")
    lines = [f"guest failed: {what}"]
    pc, stvec, scause = regs.get("core pc"), regs.get("csr stvec"), regs.get("csr scause")
    sepc, stval = regs.get("csr sepc"), regs.get("csr stval")
    if scause is not None and (scause or sepc):
        trap = (f"scause={scause:#x} ({cause_name(scause)}) at sepc={sepc or 0:#x}, "
                f"stval={stval or 0:#x}")
        if stvec is not None and pc is not None and pc == stvec & ~3:
            handler = " (no trap handler)" if stvec & ~3 == 0 else ""
            lines.append(f"guest trapped to stvec={stvec:#x}{handler}: {trap}")
        else:
            lines.append(f"last trap: {trap}")
    mode = regs.get("core mode")
    parts = [f"{name.split()[1]}={regs[name]:#x}" for name in
             ("core pc", "core ra", "core sp", "csr sstatus", "csr stvec", "csr sepc",
              "csr scause", "csr stval") if name in regs]
    if mode is not None:
        parts.append(f"privilege={MODES.get(mode, str(mode))}")
    if parts:
        lines.append("registers: " + " ".join(parts))
    return lines
