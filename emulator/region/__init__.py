"""The region compiler: the fast engine's second tier.

A pc that the first tier (emulator.tier1) has run ``HOT_AFTER`` times gets
a region: the blocks reachable from it through direct branches and jumps
inside its page, compiled into one Python function that the block cache
(emulator.translator) holds until its code page is written or the code
budget evicts it. The steps, one module each:

- ``discover``: decode from the entry, cut into basic blocks;
- ``emit``: one basic block as Python source, registers in locals, the
  software TLB inline; how it ends is a ``BlockExit`` (``exits``);
- ``facts``: bounds of register values, within a block and across the laps
  of a one-block loop (a guarded, specialised copy of the loop);
- ``loops``: natural loops as Python loops, one-block loops unrolled;
- ``build``: the blocks in a dispatcher on the pc, with the loops at their
  headers: the function's source, which the translator compiles.
"""
