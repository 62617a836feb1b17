"""Generate ``rvc_vectors.json``: RV64C expansion test vectors made by the
GNU cross assembler, so that the tests need no toolchain.

Regenerate (needs riscv64-unknown-elf-as/objcopy/objdump on PATH) with::

    python tests/emulator/data/gen_rvc_vectors.py

What it does:

1. ``vectors``: every compressible instruction form, with many random
   operands, is assembled twice: as the explicit ``c.*`` mnemonic (with
   ``-march=rv64gc``) and as its 32-bit expansion (``.option norvc``). Each
   vector is ``[parcel, word, "source text"]``.
2. ``exhaustive``: every 16-bit parcel (quadrants 0-2) is disassembled by
   objdump, and so is ``emulator.isa.rvc.expand(parcel)``; the two texts must
   agree (after normalising the few compressed-only spellings), and objdump
   must call a parcel illegal exactly when ``expand`` returns None. The
   script fails if they do not. The (objdump-checked) expansion table is then
   recorded as one SHA-256 per (quadrant, funct3) bucket so the test can
   check all 49152 parcels without the toolchain.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, ROOT)

from rvkvm.emulator.isa.rvc import expand  # noqa: E402

AS = "riscv64-unknown-elf-as"
OBJCOPY = "riscv64-unknown-elf-objcopy"
OBJDUMP = "riscv64-unknown-elf-objdump"
MARCH = "rv64gc"
PER_FORM = 60

rng = random.Random(20240611)


def assemble(lines: List[str], rvc: bool) -> bytes:
    src = (".option rvc\n" if rvc else ".option norvc\n") + "\n".join(lines) + "\n"
    with tempfile.TemporaryDirectory() as d:
        s, o, b = (os.path.join(d, n) for n in ("a.s", "a.o", "a.bin"))
        with open(s, "w") as f:
            f.write(src)
        subprocess.run([AS, f"-march={MARCH}", "-mno-relax", s, "-o", o], check=True)
        subprocess.run([OBJCOPY, "-O", "binary", "-j", ".text", o, b], check=True)
        with open(b, "rb") as f:
            return f.read()


# -- operand generators -------------------------------------------------------

def creg() -> int:
    return rng.randint(8, 15)


def reg(nonzero: bool = False) -> int:
    return rng.randint(1 if nonzero else 0, 31)


def mult(step: int, lo: int, hi: int) -> int:
    return rng.randrange(lo, hi + 1, step)


def simm6(nonzero: bool = False) -> int:
    while True:
        v = rng.randint(-32, 31)
        if v or not nonzero:
            return v


Form = Callable[[], Tuple[str, str]]


def _forms() -> List[Form]:
    f: List[Form] = []

    def add(fn: Form) -> None:
        f.append(fn)

    def addi4spn() -> Tuple[str, str]:
        rd, imm = creg(), mult(4, 4, 1020)
        return f"c.addi4spn x{rd}, sp, {imm}", f"addi x{rd}, sp, {imm}"
    add(addi4spn)

    for cm, m, step, hi, fp in (("c.fld", "fld", 8, 248, True), ("c.lw", "lw", 4, 124, False),
                                ("c.ld", "ld", 8, 248, False), ("c.fsd", "fsd", 8, 248, True),
                                ("c.sw", "sw", 4, 124, False), ("c.sd", "sd", 8, 248, False)):
        def mem(cm: str = cm, m: str = m, step: int = step, hi: int = hi, fp: bool = fp) -> Tuple[str, str]:
            r, b, imm = creg(), creg(), mult(step, 0, hi)
            rn = f"f{r}" if fp else f"x{r}"
            return f"{cm} {rn}, {imm}(x{b})", f"{m} {rn}, {imm}(x{b})"
        add(mem)

    def c_addi() -> Tuple[str, str]:
        rd, imm = reg(), simm6()
        return f"c.addi x{rd}, {imm}", f"addi x{rd}, x{rd}, {imm}"
    add(c_addi)
    add(lambda: ("c.nop", "addi x0, x0, 0"))

    def c_addiw() -> Tuple[str, str]:
        rd, imm = reg(True), simm6()
        return f"c.addiw x{rd}, {imm}", f"addiw x{rd}, x{rd}, {imm}"
    add(c_addiw)

    def c_li() -> Tuple[str, str]:
        rd, imm = reg(), simm6()
        return f"c.li x{rd}, {imm}", f"addi x{rd}, x0, {imm}"
    add(c_li)

    def c_addi16sp() -> Tuple[str, str]:
        imm = 0
        while imm == 0:
            imm = mult(16, -512, 496)
        return f"c.addi16sp sp, {imm}", f"addi sp, sp, {imm}"
    add(c_addi16sp)

    def c_lui() -> Tuple[str, str]:
        rd = 2
        while rd == 2:
            rd = reg()
        v = simm6(True) & 0xFFFFF
        return f"c.lui x{rd}, {v:#x}", f"lui x{rd}, {v:#x}"
    add(c_lui)

    for cm, m in (("c.srli", "srli"), ("c.srai", "srai")):
        def sh(cm: str = cm, m: str = m) -> Tuple[str, str]:
            rd, s = creg(), rng.randint(1, 63)
            return f"{cm} x{rd}, {s}", f"{m} x{rd}, x{rd}, {s}"
        add(sh)

    def c_andi() -> Tuple[str, str]:
        rd, imm = creg(), simm6()
        return f"c.andi x{rd}, {imm}", f"andi x{rd}, x{rd}, {imm}"
    add(c_andi)

    for cm, m in (("c.sub", "sub"), ("c.xor", "xor"), ("c.or", "or"), ("c.and", "and"),
                  ("c.subw", "subw"), ("c.addw", "addw")):
        def ca(cm: str = cm, m: str = m) -> Tuple[str, str]:
            rd, rs2 = creg(), creg()
            return f"{cm} x{rd}, x{rs2}", f"{m} x{rd}, x{rd}, x{rs2}"
        add(ca)

    def c_j() -> Tuple[str, str]:
        off = mult(2, -2048, 2046)
        return f"c.j .{off:+d}", f"jal x0, .{off:+d}"
    add(c_j)

    for cm, m in (("c.beqz", "beq"), ("c.bnez", "bne")):
        def cb(cm: str = cm, m: str = m) -> Tuple[str, str]:
            rs1, off = creg(), mult(2, -256, 254)
            return f"{cm} x{rs1}, .{off:+d}", f"{m} x{rs1}, x0, .{off:+d}"
        add(cb)

    def c_slli() -> Tuple[str, str]:
        rd, s = reg(), rng.randint(1, 63)
        return f"c.slli x{rd}, {s}", f"slli x{rd}, x{rd}, {s}"
    add(c_slli)

    for cm, m, step, hi, fp, nz in (("c.fldsp", "fld", 8, 504, True, False),
                                    ("c.lwsp", "lw", 4, 252, False, True),
                                    ("c.ldsp", "ld", 8, 504, False, True),
                                    ("c.fsdsp", "fsd", 8, 504, True, False),
                                    ("c.swsp", "sw", 4, 252, False, False),
                                    ("c.sdsp", "sd", 8, 504, False, False)):
        def spmem(cm: str = cm, m: str = m, step: int = step, hi: int = hi, fp: bool = fp,
                  nz: bool = nz) -> Tuple[str, str]:
            r, imm = reg(nz), mult(step, 0, hi)
            rn = f"f{r}" if fp else f"x{r}"
            return f"{cm} {rn}, {imm}(sp)", f"{m} {rn}, {imm}(sp)"
        add(spmem)

    def c_jr() -> Tuple[str, str]:
        r = reg(True)
        return f"c.jr x{r}", f"jalr x0, 0(x{r})"
    add(c_jr)

    def c_jalr() -> Tuple[str, str]:
        r = reg(True)
        return f"c.jalr x{r}", f"jalr x1, 0(x{r})"
    add(c_jalr)

    def c_mv() -> Tuple[str, str]:
        rd, rs2 = reg(), reg(True)
        return f"c.mv x{rd}, x{rs2}", f"add x{rd}, x0, x{rs2}"
    add(c_mv)

    def c_add() -> Tuple[str, str]:
        rd, rs2 = reg(), reg(True)
        return f"c.add x{rd}, x{rs2}", f"add x{rd}, x{rd}, x{rs2}"
    add(c_add)
    add(lambda: ("c.ebreak", "ebreak"))
    return f


def make_vectors() -> List[list]:
    pairs: List[Tuple[str, str]] = []
    for form in _forms():
        seen = set()
        for _ in range(PER_FORM):
            p = form()
            if p not in seen:
                seen.add(p)
                pairs.append(p)
    small = assemble([p[0] for p in pairs], True)
    big = assemble([p[1] for p in pairs], False)
    assert len(small) == 2 * len(pairs), "a c.* line did not assemble to 16 bits"
    assert len(big) == 4 * len(pairs)
    out = []
    for k, (cs, ws) in enumerate(pairs):
        h = struct.unpack_from("<H", small, 2 * k)[0]
        w = struct.unpack_from("<I", big, 4 * k)[0]
        out.append([h, w, f"{cs} => {ws}"])
    return out


# -- exhaustive objdump cross-check ----------------------------------------------

def disassemble(data: bytes) -> Dict[int, str]:
    """Offset -> normalised disassembly text of a raw .text blob."""
    with tempfile.TemporaryDirectory() as d:
        b = os.path.join(d, "a.bin")
        with open(b, "wb") as f:
            f.write(data)
        txt = subprocess.run([OBJDUMP, "-D", "-b", "binary", "-m", "riscv:rv64",
                              "-M", "no-aliases", b],
                             check=True, capture_output=True, text=True).stdout
    out: Dict[int, str] = {}
    for line in txt.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\t([0-9a-f]+)\s*\t(.*)$", line)
        if m:
            out[int(m.group(1), 16)] = m.group(3).strip()
    return out


_PCREL_MNEMS = ("c.j", "c.beqz", "c.bnez", "jal", "beq", "bne")


def normalise(text: str, pc: int) -> str:
    """Make the disassembly of a c.* parcel comparable to its expansion's:
    single spaces, and pc-relative targets (printed as absolute addresses)
    as offsets from the instruction."""
    text = re.sub(r"\s+", " ", text.split("#")[0]).strip()
    mnem, _, ops = text.partition(" ")
    ops_l = [o.strip() for o in ops.split(",")] if ops else []
    if mnem in _PCREL_MNEMS and ops_l:
        ops_l[-1] = str(int(ops_l[-1], 16) - pc)
    return mnem + " " + ",".join(ops_l)


# c.* mnemonic -> function of its operand list giving the expansion's text
# (objdump -M no-aliases prints compressed instructions with c.* names).
def _expected(mnem: str, ops: List[str]) -> Optional[str]:
    if mnem == "c.addi4spn":
        return f"addi {ops[0]},{ops[1]},{int(ops[2], 0)}"
    if mnem in ("c.fld", "c.lw", "c.ld", "c.fsd", "c.sw", "c.sd", "c.fldsp", "c.lwsp", "c.ldsp",
                "c.fsdsp", "c.swsp", "c.sdsp"):
        base = mnem[2:].replace("sp", "")
        return f"{base} {ops[0]},{ops[1]}"
    if mnem in ("c.addi", "c.addiw", "c.andi"):
        return f"{mnem[2:]} {ops[0]},{ops[0]},{int(ops[1], 0)}"
    if mnem == "c.nop":
        return f"addi zero,zero,{int(ops[0], 0) if ops else 0}"
    if mnem == "c.li":
        return f"addi {ops[0]},zero,{int(ops[1], 0)}"
    if mnem == "c.addi16sp":
        return f"addi sp,sp,{int(ops[1], 0)}"
    if mnem == "c.lui":
        return f"lui {ops[0]},{ops[1]}"
    if mnem in ("c.srli", "c.srai", "c.slli"):
        return f"{mnem[2:]} {ops[0]},{ops[0]},{int(ops[1], 0):#x}"
    if mnem in ("c.srli64", "c.srai64", "c.slli64"):  # shamt=0: HINTs on RV64
        return f"{mnem[2:6]} {ops[0]},{ops[0]},0x0"
    if mnem in ("c.sub", "c.xor", "c.or", "c.and", "c.subw", "c.addw", "c.add"):
        return f"{mnem[2:]} {ops[0]},{ops[0]},{ops[1]}"
    if mnem == "c.mv":
        return f"add {ops[0]},zero,{ops[1]}"
    if mnem == "c.j":
        return f"jal zero,{ops[0]}"
    if mnem in ("c.beqz", "c.bnez"):
        return f"{mnem[2:-1]} {ops[0]},zero,{ops[1]}"
    if mnem == "c.jr":
        return f"jalr zero,0({ops[0]})"
    if mnem == "c.jalr":
        return f"jalr ra,0({ops[0]})"
    if mnem == "c.ebreak":
        return "ebreak"
    return None


# Parcels the spec reserves but objdump still disassembles.
OBJDUMP_LENIENT = {
    0x6101: "c.addi16sp with nzimm=0 is reserved (objdump prints 'c.addi16sp sp,0')",
}


def exhaustive_check() -> Dict[str, str]:
    parcels = [h for h in range(0x10000) if h & 3 != 3]
    # Each parcel and its expansion are placed at distinct addresses; the
    # pc-relative forms are normalised to offsets.
    small = b"".join(struct.pack("<H", h) for h in parcels)
    exps = [expand(h) for h in parcels]
    big = b"".join(struct.pack("<I", w if w is not None else 0) for w in exps)
    dis_small = disassemble(small)
    dis_big = disassemble(big)
    bad = []
    for k, h in enumerate(parcels):
        s = dis_small.get(2 * k, "")
        w = exps[k]
        illegal_objdump = s.startswith(".") or s in ("", "c.unimp")
        if w is None:
            if not illegal_objdump and h not in OBJDUMP_LENIENT:
                bad.append(f"{h:#06x}: expand=None but objdump says {s!r}")
            continue
        if illegal_objdump:
            bad.append(f"{h:#06x}: expand={w:#010x} but objdump says {s!r}")
            continue
        cs = normalise(s, 2 * k)
        mnem, _, ops = cs.partition(" ")
        want = _expected(mnem, ops.split(",") if ops else [])
        got = normalise(dis_big.get(4 * k, ""), 4 * k)
        if want is None or re.sub(r"\s+", "", want) != re.sub(r"\s+", "", got):
            bad.append(f"{h:#06x}: {s!r} -> expected {want!r}, expand gives {got!r} ({w:#010x})")
    if bad:
        print("\n".join(bad[:50] + bad[-50:]), file=sys.stderr)
        print(f"{len(bad)} mismatches", file=sys.stderr)
        raise SystemExit(1)
    return table_hashes()


def table_hashes() -> Dict[str, str]:
    """SHA-256 of the expansion table, per (quadrant, funct3) bucket: for
    each parcel in increasing order, 4 little-endian bytes of the expansion
    (0xFFFFFFFF for None)."""
    out: Dict[str, str] = {}
    for q in range(3):
        for f3 in range(8):
            hsh = hashlib.sha256()
            for mid in range(0x800):
                h = (f3 << 13) | (mid << 2) | q
                w = expand(h)
                hsh.update(struct.pack("<I", 0xFFFFFFFF if w is None else w))
            out[f"{q}.{f3}"] = hsh.hexdigest()
    return out


def main() -> None:
    vectors = make_vectors()
    bad = [v for v in vectors if expand(v[0]) != v[1]]
    for v in bad[:20]:
        got = expand(v[0])
        print(f"mismatch {v[0]:#06x} {v[2]}: want {v[1]:#010x} got {got!r}", file=sys.stderr)
    hashes = exhaustive_check()
    if bad:
        raise SystemExit(1)
    data = {
        "generator": "tests/emulator/data/gen_rvc_vectors.py",
        "assembler": subprocess.run([AS, "--version"], capture_output=True, text=True,
                                    check=True).stdout.splitlines()[0],
        "march": MARCH,
        "vectors": vectors,
        "table_sha256": hashes,
    }
    path = os.path.join(HERE, "rvc_vectors.json")
    with open(path, "w") as f:
        # one vector per line
        head = {k: v for k, v in data.items() if k != "vectors"}
        f.write(json.dumps(head, indent=1)[:-2] + ',\n "vectors": [\n')
        f.write(",\n".join(json.dumps(v) for v in vectors))
        f.write("\n ]\n}\n")
    print(f"wrote {len(vectors)} vectors to {path}")


if __name__ == "__main__":
    main()
