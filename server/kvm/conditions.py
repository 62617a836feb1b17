"""Requirement expressions used by the extension and feature tables.

A condition is a tuple of terms that must all hold; a term is one atom or
several atoms joined by ``|`` (any of them). Atoms name a fact:

* ``host:<name>``  the emulated host has ISA extension or capability <name>
* ``abi:<flag>``   the kernel ABI profile has behaviour flag <flag>
* ``isa:<NAME>``   the vCPU currently has KVM ISA extension <NAME> enabled
* ``never``        never holds

The tables stay plain data; ``profiles.Platform`` supplies the facts.
"""

from __future__ import annotations

from typing import Callable, Tuple

Cond = Tuple[str, ...]

ALWAYS: Cond = ()
NEVER: Cond = ("never",)


def holds(cond: Cond, fact: Callable[[str], bool]) -> bool:
    """True if every term of ``cond`` has at least one atom for which ``fact`` holds."""
    return all(
        any(atom != "never" and fact(atom) for atom in term.split("|")) for term in cond
    )


def atoms(cond: Cond) -> Tuple[str, ...]:
    """Every atom mentioned in ``cond`` (for table self-checks)."""
    return tuple(atom for term in cond for atom in term.split("|"))
