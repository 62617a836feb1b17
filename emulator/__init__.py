"""rvkvm's pure-Python RV64GC emulator core.

The package imports nothing outside the standard library and pyelftools and
runs on CPython 3.11+ and on PyPy (whose Python is 3.9): keep the syntax
3.9-compatible (``from __future__ import annotations``, no ``match``).
"""

from __future__ import annotations

__all__ = ["Hart", "PhysMemory", "Machine"]


def __getattr__(name: str) -> object:
    # Lazy re-exports keep ``python -m emulator`` start-up light.
    if name == "Hart":
        from .hart import Hart

        return Hart
    if name == "PhysMemory":
        from .memory import PhysMemory

        return PhysMemory
    if name == "Machine":
        from .machine import Machine

        return Machine
    raise AttributeError(name)
