"""Tests that look at translated regions (their source, what was built)
run with the first tier off, so a region is built at the first miss as
before the first tier existed; tests/emulator/test_tiers.py runs the
first tier under every promotion count."""

from __future__ import annotations

import pytest

import rvkvm.emulator.tier1 as tier1

REGION_TESTS = {
    "test_access_groups", "test_region_entries", "test_structured_loops",
    "test_translator_entry", "test_value_ranges", "test_code_after_sfence",
    "test_invalidation", "test_base_groups",
}


@pytest.fixture(autouse=True)
def _regions_at_first_miss(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.module.__name__.rsplit(".", 1)[-1] in REGION_TESTS:
        monkeypatch.setattr(tier1, "HOT_AFTER", 0)
