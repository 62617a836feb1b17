/* fp_basic: F/D spot checks: rounding modes, exception flags, NaN boxing,
 * conversion saturation, fmin/fmax NaN rules, fclass, compares.
 * Exits with 1 on success, (N<<1)|1 for the first failing check N. */
#include "rt.h"

#define NV 0x10
#define DZ 0x08
#define OF 0x04
#define UF 0x02
#define NX 0x01

#define F_ONE   0x3f800000u
#define F_TWO   0x40000000u
#define F_THREE 0x40400000u
#define F_MONE  0xbf800000u
#define F_INF   0x7f800000u
#define F_NINF  0xff800000u
#define F_QNAN  0x7fc00000u   /* canonical NaN */
#define F_SNAN  0x7f800001u
#define F_MAX   0x7f7fffffu
#define F_MIN   0x00800000u   /* smallest normal */
#define F_ZERO  0x00000000u
#define F_NZERO 0x80000000u

/* Run `text` with ft0 = a, ft1 = b (single bits) and return ft2's low 32 bits;
 * the flags raised are left in fflags (cleared first). */
#define FOP_S(text, a, b)                                                     \
    ({                                                                        \
        u64 __r;                                                              \
        csr_write(fflags, 0);                                                 \
        asm volatile("fmv.w.x ft0, %1\n\tfmv.w.x ft1, %2\n\t" text "\n\tfmv.x.w %0, ft2" \
                     : "=r"(__r) : "r"((u64)(a)), "r"((u64)(b)) : "ft0", "ft1", "ft2", "memory"); \
        (u32)__r;                                                             \
    })
/* Same with doubles. */
#define FOP_D(text, a, b)                                                     \
    ({                                                                        \
        u64 __r;                                                              \
        csr_write(fflags, 0);                                                 \
        asm volatile("fmv.d.x ft0, %1\n\tfmv.d.x ft1, %2\n\t" text "\n\tfmv.x.d %0, ft2" \
                     : "=r"(__r) : "r"((u64)(a)), "r"((u64)(b)) : "ft0", "ft1", "ft2", "memory"); \
        __r;                                                                  \
    })
/* Single -> integer register result (conversions, compares, fclass). */
#define FTOX_S(text, a, b)                                                    \
    ({                                                                        \
        u64 __r;                                                              \
        csr_write(fflags, 0);                                                 \
        asm volatile("fmv.w.x ft0, %1\n\tfmv.w.x ft1, %2\n\t" text            \
                     : "=r"(__r) : "r"((u64)(a)), "r"((u64)(b)) : "ft0", "ft1", "memory"); \
        __r;                                                                  \
    })
#define FTOX_D(text, a)                                                       \
    ({                                                                        \
        u64 __r;                                                              \
        csr_write(fflags, 0);                                                 \
        asm volatile("fmv.d.x ft0, %1\n\t" text : "=r"(__r) : "r"((u64)(a)) : "ft0", "memory"); \
        __r;                                                                  \
    })
#define FLAGS() csr_read(fflags)

#define CHECK_FP(n, got, want, flags)                                                  \
    do {                                                                               \
        u64 __g = (u64)(got), __f = FLAGS();                                           \
        rt_cur_check = (n);                                                            \
        if (__g != (u64)(want) || __f != (u64)(flags)) {                               \
            rt_printf("FAIL check %d (line %d): got 0x%lx flags 0x%lx, want 0x%lx flags 0x%x\n", \
                      (n), __LINE__, __g, __f, (u64)(want), (flags));                  \
            rt_exit(n);                                                                \
        }                                                                              \
    } while (0)

int main(void)
{
    csr_set(mstatus, MSTATUS_FS_INITIAL);
    csr_write(fcsr, 0);

    /* 1-5: 1/3 in single precision with static rounding modes (NX each). */
    CHECK_FP(1, FOP_S("fdiv.s ft2, ft0, ft1, rne", F_ONE, F_THREE), 0x3eaaaaab, NX);
    CHECK_FP(2, FOP_S("fdiv.s ft2, ft0, ft1, rtz", F_ONE, F_THREE), 0x3eaaaaaa, NX);
    CHECK_FP(3, FOP_S("fdiv.s ft2, ft0, ft1, rdn", F_ONE, F_THREE), 0x3eaaaaaa, NX);
    CHECK_FP(4, FOP_S("fdiv.s ft2, ft0, ft1, rup", F_ONE, F_THREE), 0x3eaaaaab, NX);
    CHECK_FP(5, FOP_S("fdiv.s ft2, ft0, ft1, rmm", F_ONE, F_THREE), 0x3eaaaaab, NX);
    /* 6-10: -1/3 with the dynamic rounding mode from frm. */
    static const u32 neg_third[5] = {0xbeaaaaab, 0xbeaaaaaa, 0xbeaaaaab, 0xbeaaaaaa, 0xbeaaaaab};
    for (int rm = 0; rm < 5; rm++) {
        csr_write(frm, rm);
        CHECK_FP(6 + rm, FOP_S("fdiv.s ft2, ft0, ft1", F_MONE, F_THREE), neg_third[rm], NX);
    }
    csr_write(frm, 0);
    /* 11-15: double 1/3 in each static mode. */
    static const u64 third_d[5] = {0x3fd5555555555555UL, 0x3fd5555555555555UL,
                                   0x3fd5555555555555UL, 0x3fd5555555555556UL,
                                   0x3fd5555555555555UL};
    const u64 D_ONE = 0x3ff0000000000000UL, D_THREE = 0x4008000000000000UL;
    CHECK_FP(11, FOP_D("fdiv.d ft2, ft0, ft1, rne", D_ONE, D_THREE), third_d[0], NX);
    CHECK_FP(12, FOP_D("fdiv.d ft2, ft0, ft1, rtz", D_ONE, D_THREE), third_d[1], NX);
    CHECK_FP(13, FOP_D("fdiv.d ft2, ft0, ft1, rdn", D_ONE, D_THREE), third_d[2], NX);
    CHECK_FP(14, FOP_D("fdiv.d ft2, ft0, ft1, rup", D_ONE, D_THREE), third_d[3], NX);
    CHECK_FP(15, FOP_D("fdiv.d ft2, ft0, ft1, rmm", D_ONE, D_THREE), third_d[4], NX);
    /* 16-25: ties: fcvt.w.s of +2.5 / -2.5 in RNE, RTZ, RDN, RUP, RMM. */
    const u32 F_2_5 = 0x40200000u, F_M2_5 = 0xc0200000u;
    CHECK_FP(16, FTOX_S("fcvt.w.s %0, ft0, rne", F_2_5, 0), 2, NX);
    CHECK_FP(17, FTOX_S("fcvt.w.s %0, ft0, rtz", F_2_5, 0), 2, NX);
    CHECK_FP(18, FTOX_S("fcvt.w.s %0, ft0, rdn", F_2_5, 0), 2, NX);
    CHECK_FP(19, FTOX_S("fcvt.w.s %0, ft0, rup", F_2_5, 0), 3, NX);
    CHECK_FP(20, FTOX_S("fcvt.w.s %0, ft0, rmm", F_2_5, 0), 3, NX);
    CHECK_FP(21, FTOX_S("fcvt.w.s %0, ft0, rne", F_M2_5, 0), -2L, NX);
    CHECK_FP(22, FTOX_S("fcvt.w.s %0, ft0, rtz", F_M2_5, 0), -2L, NX);
    CHECK_FP(23, FTOX_S("fcvt.w.s %0, ft0, rdn", F_M2_5, 0), -3L, NX);
    CHECK_FP(24, FTOX_S("fcvt.w.s %0, ft0, rup", F_M2_5, 0), -2L, NX);
    CHECK_FP(25, FTOX_S("fcvt.w.s %0, ft0, rmm", F_M2_5, 0), -3L, NX);
    /* 26: an exact operation raises no flag. */
    CHECK_FP(26, FOP_S("fadd.s ft2, ft0, ft1", F_ONE, F_TWO), F_THREE, 0);

    /* 27: divide by zero: 1/0 = +inf, DZ only. */
    CHECK_FP(27, FOP_S("fdiv.s ft2, ft0, ft1", F_ONE, F_ZERO), F_INF, DZ);
    /* 28: 0/0 = canonical NaN, NV. */
    CHECK_FP(28, FOP_S("fdiv.s ft2, ft0, ft1", F_ZERO, F_ZERO), F_QNAN, NV);
    /* 29: sqrt(-1) = canonical NaN, NV. */
    CHECK_FP(29, FOP_S("fsqrt.s ft2, ft0", F_MONE, 0), F_QNAN, NV);
    /* 30: overflow in RNE: FLT_MAX * 2 = +inf, OF | NX. */
    CHECK_FP(30, FOP_S("fmul.s ft2, ft0, ft1, rne", F_MAX, F_TWO), F_INF, OF | NX);
    /* 31: overflow in RTZ saturates to FLT_MAX, OF | NX. */
    CHECK_FP(31, FOP_S("fmul.s ft2, ft0, ft1, rtz", F_MAX, F_TWO), F_MAX, OF | NX);
    /* 32: underflow: smallest normal * smallest normal -> +0, UF | NX. */
    CHECK_FP(32, FOP_S("fmul.s ft2, ft0, ft1", F_MIN, F_MIN), F_ZERO, UF | NX);
    /* 33: inf - inf = canonical NaN, NV. */
    CHECK_FP(33, FOP_S("fsub.s ft2, ft0, ft1", F_INF, F_INF), F_QNAN, NV);
    /* 34: flags accumulate in fflags until cleared. */
    csr_write(fflags, 0);
    asm volatile("fmv.w.x ft0, %0\n\tfmv.w.x ft1, %1\n\tfdiv.s ft2, ft0, ft1\n\t"
                 "fdiv.s ft2, ft1, ft1" ::"r"((u64)F_ONE), "r"((u64)F_ZERO) : "ft0", "ft1", "ft2");
    CHECK_EQ(34, csr_read(fflags), DZ | NV);

    /* 35: NaN boxing: a single-precision op on a value whose upper 32 bits are
     * not all ones reads it as the canonical NaN. */
    csr_write(fflags, 0);
    u64 r;
    asm volatile("fmv.d.x ft0, %1\n\tfadd.s ft1, ft0, ft0\n\tfmv.x.w %0, ft1"
                 : "=r"(r) : "r"(0x000000003f800000UL) : "ft0", "ft1");
    CHECK_EQ(35, (u32)r, F_QNAN);
    /* 36: a properly boxed value (upper bits all ones) is used as is. */
    asm volatile("fmv.d.x ft0, %1\n\tfadd.s ft1, ft0, ft0\n\tfmv.x.w %0, ft1"
                 : "=r"(r) : "r"(0xffffffff3f800000UL) : "ft0", "ft1");
    CHECK_EQ(36, (u32)r, F_TWO);
    /* 37: single-precision results are written NaN-boxed (upper 32 bits ones). */
    asm volatile("fmv.w.x ft0, %1\n\tfadd.s ft1, ft0, ft0\n\tfmv.x.d %0, ft1"
                 : "=r"(r) : "r"((u64)F_ONE) : "ft0", "ft1");
    CHECK_EQ(37, r, 0xffffffff40000000UL);
    /* 38: flw NaN-boxes too; fmv.x.w sign-extends bit 31. */
    static volatile u32 fmem = 0xbf800000u;
    u64 r2;
    asm volatile("flw ft0, 0(%2)\n\tfmv.x.d %0, ft0\n\tfmv.x.w %1, ft0"
                 : "=r"(r), "=r"(r2) : "r"(&fmem) : "ft0", "memory");
    CHECK(38, r == 0xffffffffbf800000UL && r2 == 0xffffffffbf800000UL);

    /* 39-46: fcvt saturation: out-of-range and NaN inputs give the clamp values
     * and NV (32-bit results sign-extended). */
    CHECK_FP(39, FTOX_S("fcvt.w.s %0, ft0", F_INF, 0), 0x7fffffffUL, NV);
    CHECK_FP(40, FTOX_S("fcvt.w.s %0, ft0", F_NINF, 0), 0xffffffff80000000UL, NV);
    CHECK_FP(41, FTOX_S("fcvt.w.s %0, ft0", F_QNAN, 0), 0x7fffffffUL, NV);
    CHECK_FP(42, FTOX_S("fcvt.wu.s %0, ft0", F_MONE, 0), 0, NV);
    CHECK_FP(43, FTOX_S("fcvt.wu.s %0, ft0", 0x4f800000u /* 2^32 */, 0), ~0UL, NV);
    CHECK_FP(44, FTOX_D("fcvt.l.d %0, ft0", 0x46293e5939a08ceaUL /* 1e30 */), 0x7fffffffffffffffUL, NV);
    CHECK_FP(45, FTOX_D("fcvt.lu.d %0, ft0", 0x7ff8000000000000UL), ~0UL, NV);
    /* 46: fcvt.wu.s of -0.5 rounds (RNE) to 0: in range, only NX. */
    CHECK_FP(46, FTOX_S("fcvt.wu.s %0, ft0, rne", 0xbf000000u, 0), 0, NX);

    /* 47-52: fmin/fmax (IEEE 754-2019 minimumNumber/maximumNumber). */
    CHECK_FP(47, FOP_S("fmin.s ft2, ft0, ft1", F_SNAN, F_ONE), F_ONE, NV);
    CHECK_FP(48, FOP_S("fmax.s ft2, ft0, ft1", F_ONE, F_SNAN), F_ONE, NV);
    CHECK_FP(49, FOP_S("fmin.s ft2, ft0, ft1", F_QNAN, F_ONE), F_ONE, 0);
    CHECK_FP(50, FOP_S("fmax.s ft2, ft0, ft1", F_QNAN, F_QNAN), F_QNAN, 0);
    CHECK_FP(51, FOP_S("fmin.s ft2, ft0, ft1", F_ZERO, F_NZERO), F_NZERO, 0);
    CHECK_FP(52, FOP_S("fmax.s ft2, ft0, ft1", F_NZERO, F_ZERO), F_ZERO, 0);

    /* 53-62: fclass.s sets exactly one bit per class. */
    static const u32 cls_in[10] = {F_NINF, F_MONE, 0x80000001u, F_NZERO, F_ZERO,
                                   0x00000001u, F_ONE, F_INF, F_SNAN, F_QNAN};
    for (int i = 0; i < 10; i++)
        CHECK_FP(53 + i, FTOX_S("fclass.s %0, ft0", cls_in[i], 0), 1UL << i, 0);
    /* 63: fclass.d of a double sNaN. */
    CHECK_FP(63, FTOX_D("fclass.d %0, ft0", 0x7ff0000000000001UL), 1UL << 8, 0);

    /* 64-67: compares: feq with qNaN is quiet; flt/fle with qNaN signal NV;
     * feq with sNaN signals NV. */
    CHECK_FP(64, FTOX_S("feq.s %0, ft0, ft1", F_QNAN, F_ONE), 0, 0);
    CHECK_FP(65, FTOX_S("flt.s %0, ft0, ft1", F_QNAN, F_ONE), 0, NV);
    CHECK_FP(66, FTOX_S("feq.s %0, ft0, ft1", F_SNAN, F_SNAN), 0, NV);
    CHECK_FP(67, FTOX_S("fle.s %0, ft0, ft1", F_NZERO, F_ZERO), 1, 0);

    /* 68: fmadd is fused (one rounding): (1+2^-23)*(1-2^-23) - 1 = -2^-46. */
    u64 fr;
    csr_write(fflags, 0);
    asm volatile("fmv.w.x ft0, %1\n\tfmv.w.x ft1, %2\n\tfmv.w.x ft2, %3\n\t"
                 "fmsub.s ft3, ft0, ft1, ft2\n\tfmv.x.w %0, ft3"
                 : "=r"(fr) : "r"(0x3f800001UL), "r"(0x3f7ffffeUL), "r"((u64)F_ONE)
                 : "ft0", "ft1", "ft2", "ft3");
    CHECK_FP(68, (u32)fr, 0xa8800000u, 0);
    /* 69: fcvt.s.d rounds (NX) and fcvt.d.s is exact. */
    CHECK_FP(69, FTOX_D("fcvt.s.d ft1, ft0\n\tfmv.x.w %0, ft1", third_d[0]), 0x3eaaaaabUL, NX);
    CHECK_FP(70, FTOX_S("fcvt.d.s ft1, ft0\n\tfmv.x.d %0, ft1", F_THREE, 0), D_THREE, 0);
    /* 71: an invalid static rounding mode (5) is an illegal instruction. */
    rt_clear_traps();
    rt_expect_mtrap = 1;
    asm volatile(".insn r 0x53, 5, 0x00, ft2, ft0, ft1" ::: "ft2"); /* fadd.s rm=5 */
    CHECK(71, rt_mtrap.count == 1 && rt_mtrap.cause == CAUSE_ILLEGAL);
    /* 72: frm = 5..7 makes dynamic-rounding instructions illegal. */
    csr_write(frm, 7);
    rt_clear_traps();
    rt_expect_mtrap = 1;
    asm volatile("fadd.s ft2, ft0, ft1" ::: "ft2");
    csr_write(frm, 0);
    CHECK(72, rt_mtrap.count == 1 && rt_mtrap.cause == CAUSE_ILLEGAL);

    rt_puts("fp_basic: all checks passed\n");
    return 0;
}
