"""Every in-kernel SBI answer, per kernel ABI profile, against Linux.

``data/sbi_conformance.json`` holds one row per (profiles, extension, fid,
args) with the (error, value) or the exit Linux gives and the
``arch/riscv/kvm/vcpu_sbi_*.c`` version it comes from. Each row runs a
guest that makes the call on a real vCPU of each profile it names.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import pytest

from rvkvm.server.kvm import parse_name
from rvkvm.server.kvm.exits import (
    KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN,
    DebugExit,
    IntrExit,
    SbiExit,
    SystemEventExit,
)
from rvkvm.server.kvm.profiles import ABI_CHANGES, KERNEL_PROFILES
from rvkvm.server.kvm.sbi_ext import BY_NAME, SBI_BASE_EID
from rvkvm.server.kvm.vcpu import KVM_MP_STATE_RUNNABLE
from rvkvm.server.kvm.vm import KVM_CAP_RISCV_MP_STATE_RESET
from tests.emulator import rvasm as A
from tests.server.kvm_helpers import load_data
from tests.server.kvm_runtime_guest import (
    A0,
    A1,
    DATA,
    EBREAK,
    RAM_BASE,
    li,
    load,
    new_vm,
    sbi_call,
)

U64 = (1 << 64) - 1
MARKER = 0x5A5A_1234  # a1 before the call, to see whether the kernel wrote it
SSTATUS = parse_name("csr sstatus")
SSTATUS_SPP = 1 << 8

SBI_ERRORS = {
    "SUCCESS": 0, "FAILURE": -1, "NOT_SUPPORTED": -2, "INVALID_PARAM": -3, "DENIED": -4,
    "INVALID_ADDRESS": -5, "ALREADY_AVAILABLE": -6, "DENIED_LOCKED": -14,
}
EVENTS = {"SHUTDOWN": KVM_SYSTEM_EVENT_SHUTDOWN, "RESET": KVM_SYSTEM_EVENT_RESET}
SYMBOLS = {
    "ALL_ONES": U64, "RAM": RAM_BASE + 0x1000, "DATA": DATA, "DATA+8": DATA + 8, "NOT_RAM": 0x1000,
}

DATA_FILE = load_data("sbi_conformance.json")
ROWS: List[Dict[str, Any]] = DATA_FILE["rows"]


def _eid(ext: Any) -> int:
    if isinstance(ext, int):
        return ext
    if ext == "BASE":
        return SBI_BASE_EID
    return BY_NAME[ext].eids[0][0]


def _arg(value: Any) -> int:
    if isinstance(value, int):
        return value & U64
    if value in SYMBOLS:
        return SYMBOLS[value]
    return _eid(value)  # an extension name: its EID (BASE probe)


def _cases() -> List[Tuple[str, int, Dict[str, Any]]]:
    cases = []
    for n, row in enumerate(ROWS):
        for profile in row["profiles"]:
            cases.append((profile, n, row))
    return cases


def _case_id(case: Tuple[str, int, Dict[str, Any]]) -> str:
    profile, n, row = case
    return f"{profile}-{n}-{row['ext']}-{row['fid']}"


def test_data_file_names_known_profiles_and_sources():
    sources = DATA_FILE["sources"]
    for row in ROWS:
        assert set(row["profiles"]) <= set(KERNEL_PROFILES), row
        assert row["source"] in sources, row
    assert {p for row in ROWS for p in row["profiles"]} == set(KERNEL_PROFILES)


@pytest.mark.parametrize("case", _cases(), ids=_case_id)
def test_sbi_call_answer(case):
    profile, _, row = case
    setup = row.get("setup", {})
    vm, vcpus = new_vm(profile, vcpus=setup.get("vcpus", 1))
    vcpu = vcpus[0]
    if setup.get("cap") == "mp_state_reset":
        vm.enable_cap(KVM_CAP_RISCV_MP_STATE_RESET)
    for name in setup.get("enable", []):
        vcpu.set_value(parse_name(f"sbi_ext {name}"), 1)
    for name in setup.get("disable", []):
        vcpu.set_value(parse_name(f"sbi_ext {name}"), 0)
    for other in setup.get("runnable", []):
        vcpus[other].set_mp_state(KVM_MP_STATE_RUNNABLE)
    if setup.get("spp") == 0:
        vcpu.set_value(SSTATUS, vcpu.get_value(SSTATUS) & ~SSTATUS_SPP)
    vm.write_memory(DATA, bytes(64))
    program: List[int] = []
    for ext, fid, *args in row.get("before", []):
        program += sbi_call(_eid(ext), fid, *(_arg(a) for a in args))
    args = [_arg(a) for a in row["args"]]
    program += li(11, MARKER) + sbi_call(_eid(row["ext"]), row["fid"], *args) + [EBREAK]
    load(vm, vcpu, program)
    pc_of_ecall = RAM_BASE + 4 * (len(program) - 2)
    expect = row["expect"]
    exit_ = vcpu.run(budget=100_000, idle_timeout=0.0)
    kind = expect["exit"]
    if kind is None:
        assert isinstance(exit_, DebugExit), exit_
    elif kind == "idle":
        assert isinstance(exit_, IntrExit) and exit_.why == "idle", exit_
    elif kind == "sbi":
        assert isinstance(exit_, SbiExit), exit_
        assert (exit_.extension_id, exit_.function_id) == (_eid(row["ext"]), row["fid"])
        assert exit_.args[:len(args)] == args
        assert exit_.ret == [SBI_ERRORS["NOT_SUPPORTED"] & U64, 0]
        assert vcpu.get_value(parse_name("core pc")) == pc_of_ecall  # not stepped yet
        return
    else:
        assert kind == "system_event"
        assert isinstance(exit_, SystemEventExit), exit_
        assert exit_.type == EVENTS[expect["event"]]
        assert exit_.data == expect["data"]
        assert vcpu.get_value(parse_name("core pc")) == pc_of_ecall
        return
    error = expect["error"]
    error = SBI_ERRORS[error] if isinstance(error, str) else error
    assert vcpu.get_value(A0) == error & U64
    value = MARKER if expect["value"] is None else expect["value"]
    assert vcpu.get_value(A1) == value & U64
    assert vcpu.get_value(parse_name("core pc")) == pc_of_ecall + 4


def test_every_profile_has_a_row_per_in_kernel_extension():
    """The table covers every extension each profile answers in the kernel."""
    for name, kernel in KERNEL_PROFILES.items():
        covered = {row["ext"] for row in ROWS if name in row["profiles"]}
        for ext in kernel.sbi_exts:
            assert ext.name in covered or ext.eids[0][0] in covered, (name, ext.name)
        assert "BASE" in covered


def test_a_guest_program_reaches_its_ebreak():
    """Sanity for the runner: a program without a call ends in DEBUG."""
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, [A.addi(10, 0, 7), EBREAK])
    assert isinstance(vcpu.run(idle_timeout=0.0), DebugExit)
    assert vcpu.get_value(A0) == 7


def test_profile_changes_match_the_abi_table():
    """Each ABI_CHANGES row has its reading recorded in the data file, with
    the same first release."""
    recorded = {c["flag"]: c["since"] for c in DATA_FILE["profile_changes"]}
    table = {c.flag: "{}.{}".format(*c.since) for c in ABI_CHANGES}
    assert recorded == table
