"""What the engine does differently on PyPy, in one place.

PyPy's tracing JIT inlines a called function into the trace of its caller
and guards on the callee's code object. A call site that reaches thousands
of different generated functions (the hart's dispatch of translated
blocks, a first-tier block's loop over per-instruction functions) then
grows a chain of guards and bridges, one per callee, and most calls fall
off the chain into the JIT's blackhole interpreter. ``opaque_call`` is
PyPy's way of calling without letting the trace follow the call: the
callee then runs its own compiled code (or is interpreted until it is
hot) and the call site stays one cheap operation. On CPython it is None
and the callers keep their plain calls.
"""

from __future__ import annotations

import platform
from typing import Any, Callable, Optional

ON_PYPY = platform.python_implementation() == "PyPy"

opaque_call: Optional[Callable[..., Any]] = None
if ON_PYPY:  # pragma: no cover - PyPy only
    import pypyjit  # type: ignore[import-not-found]

    opaque_call = pypyjit.residual_call

# JIT parameters for a process that runs guests (see tune_pypy_jit).
# function_threshold (default 1619): calls of a function before it is
# traced from its start. Blocks are called opaquely, so a region's function
# runs interpreted (its loops compiled on their own) until it reaches this
# count; 200 compiles them sooner. Debian's boot, first 150 M instructions,
# side by side: 48.0 -> 42.7 CPU s (and 48.6 -> 46.1 in an earlier pair).
JIT_PARAMS = "function_threshold=200"


def tune_pypy_jit() -> bool:
    """Set PyPy's JIT parameters for running guest code (JIT_PARAMS); a
    worker process calls this once at start. False (and nothing done) on
    CPython or where there is nothing to set."""
    if not ON_PYPY or not JIT_PARAMS:
        return False
    import pypyjit  # type: ignore[import-not-found]

    pypyjit.set_param(JIT_PARAMS)
    return True


def _as_word(v: int) -> int:  # pragma: no cover - PyPy only
    """``v`` as a machine word where its value fits one. On PyPy an integer
    computed from a big one (an address masked with ``& M64``, say) stays
    a big-integer object whatever its value, and so does everything
    derived from it: a TLB key or delta made from one makes every access
    through that entry add big integers in the JIT's code (nqueens: 2.3x
    slower with the first tier filling the TLB from unsigned addresses)."""
    if -(1 << 63) <= v < (1 << 63):
        return _int_add(v, 0)
    return v


# None on CPython, where every integer is the same kind of object
as_word: Optional[Callable[[int], int]] = None
if ON_PYPY:  # pragma: no cover - PyPy only
    from __pypy__ import intop  # type: ignore[import-not-found]

    _int_add = intop.int_add
    as_word = _as_word
