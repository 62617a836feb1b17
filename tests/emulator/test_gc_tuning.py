"""The translator raises CPython's collector thresholds once (translating
allocates steadily; see translator.GC_THRESHOLDS), and only where the
process still has the defaults."""

from __future__ import annotations

import gc
import platform

import pytest

from rvkvm.emulator import translator

from . import rvasm as A
from .harts import make_hart

pytestmark = pytest.mark.skipif(platform.python_implementation() != "CPython",
                                reason="CPython's collector thresholds")


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_the_first_translator_raises_default_thresholds(thresholds) -> None:
    gc.set_threshold(700, 10, 10)
    make_hart("fast", [A.EBREAK])
    assert gc.get_threshold() == translator.GC_THRESHOLDS


def test_thresholds_a_process_set_itself_stay(thresholds) -> None:
    gc.set_threshold(1234, 5, 6)
    make_hart("fast", [A.EBREAK])
    assert gc.get_threshold() == (1234, 5, 6)
    assert translator.tune_gc() is False
