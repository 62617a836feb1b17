"""Shared helpers for the KVM model tests: data files and fresh vCPUs."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

from rvkvm.server.kvm import HostProfile, InMemoryVcpuBackend, OneRegMap, platform

DATA_DIR = os.path.join(os.path.dirname(__file__), "data")


def load_data(name: str) -> Dict[str, Any]:
    with open(os.path.join(DATA_DIR, name)) as f:
        data: Dict[str, Any] = json.load(f)
    assert data.get("source"), "every data file says where its facts come from"
    return data


def hex_ids(values: Any) -> list:
    return [int(v, 16) for v in values]


def new_vcpu(kernel: str = "latest", host: Optional[HostProfile] = None) -> OneRegMap:
    """A freshly created vCPU (KVM_CREATE_VCPU) with in-memory register storage."""
    plat = platform(kernel, host)
    return OneRegMap(plat, plat.new_vcpu_config(), InMemoryVcpuBackend(plat.host.vlenb))


# A host with everything KVM can expose to exercise the optional blocks
# (AIA CSRs, Smstateen, vector, Svade/Svadu, Sscofpmf, SBI PMU).
def rich_host() -> HostProfile:
    return HostProfile.default().plus(
        "v", "ssaia", "smstateen", "sscofpmf", "svade", "zihpm", "sbi_pmu", "h"
    )
