"""Placeholder while being written."""

from __future__ import annotations

from typing import List

from . import Insn

INSNS: List[Insn] = []
