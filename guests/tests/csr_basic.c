/* csr_basic: machine/supervisor CSR behaviour.
 * Exits with 1 on success, (N<<1)|1 for the first failing check N. */
#include "vm.h"

#define RDCYCLE_A0   0xc0002573u   /* csrrs a0, cycle, x0 */
#define RDTIME_A0    0xc0102573u   /* csrrs a0, time, x0 */
#define RDINSTRET_A0 0xc0202573u   /* csrrs a0, instret, x0 */
#define FADD_D       0x02b57553u   /* fadd.d fa0, fa0, fa1 (rm=dyn) */
#define CSRR_A0_FCSR 0x00302573u   /* csrrs a0, fcsr, x0 */
#define CSRR_A0_PMPADDR0 0x3b002573u

static void expect_m(void)
{
    rt_clear_traps();
    rt_expect_mtrap = 1;
}

/* Execute a fixed instruction word (with a0 as its register), report trap. */
#define EXEC_WORD(word)                                                         \
    ({                                                                          \
        register u64 __a0 asm("a0") = 0;                                        \
        asm volatile(".word " STR(word) : "+r"(__a0) : : "fa0", "fa1", "memory"); \
        __a0;                                                                   \
    })

static long s_rdcycle(long x) { return (long)EXEC_WORD(0xc0002573); }
static long s_rdtime(long x) { return (long)EXEC_WORD(0xc0102573); }
static long s_rdinstret(long x) { return (long)EXEC_WORD(0xc0202573); }
static long s_pmpaddr0(long x) { return (long)EXEC_WORD(0x3b002573); }
static long s_read_var(long p) { return *(volatile long *)p; }
USER_TEXT static long u_rdcycle(long x) { return (long)EXEC_WORD(0xc0002573); }
USER_TEXT static long u_rdtime(long x) { return (long)EXEC_WORD(0xc0102573); }
USER_TEXT static long u_rdinstret(long x) { return (long)EXEC_WORD(0xc0202573); }

/* Runs a counter read in `mode`; returns 1 if it trapped with illegal
 * instruction and mtval = `bits`, 0 if it did not trap, -1 otherwise. */
static int counter_traps(int mode, long (*fn)(long), u32 bits)
{
    expect_m();
    if (mode == PRV_S)
        run_s(fn, 0);
    else
        run_u(fn, 0);
    rt_expect_mtrap = 0;
    if (!rt_mtrap.count)
        return 0;
    return (rt_mtrap.cause == CAUSE_ILLEGAL && rt_mtrap.tval == bits) ? 1 : -1;
}

static volatile long some_var = 0x1234abcd;

int main(void)
{
    u64 v, w;

    /* 1-2: misa: MXL = 2 (RV64) and I, M, A, F, D, C, S, U present. */
    u64 misa = csr_read(misa);
    CHECK_EQ(1, misa >> 62, 2);
    u64 need = 0;
    const char *letters = "imafdcsu";
    for (const char *p = letters; *p; p++)
        need |= 1UL << (*p - 'a');
    CHECK_EQ(2, misa & need, need);

    /* 3: mhartid = 0 on the single hart. */
    CHECK_EQ(3, csr_read(mhartid), 0);

    /* 4: mstatus.MPP is WARL: the reserved value 2 is not kept. */
    csr_clear(mstatus, MSTATUS_MPP);
    csr_set(mstatus, 2UL << 11);
    v = (csr_read(mstatus) >> 11) & 3;
    if (!QEMU_7_2_BUILD) /* QEMU 7.2 keeps MPP=2 (no WARL legalization) */
        CHECK(4, v == 0 || v == 1 || v == 3);
    /* 5: the legal encodings are kept (S, then M, then U). */
    csr_clear(mstatus, MSTATUS_MPP);
    csr_set(mstatus, MSTATUS_MPP_S);
    v = csr_read(mstatus) & MSTATUS_MPP;
    csr_set(mstatus, MSTATUS_MPP_M);
    w = csr_read(mstatus) & MSTATUS_MPP;
    csr_clear(mstatus, MSTATUS_MPP);
    CHECK(5, v == MSTATUS_MPP_S && w == MSTATUS_MPP_M && (csr_read(mstatus) & MSTATUS_MPP) == 0);

    /* 6-11: fcsr = frm[7:5] | fflags[4:0]; frm and fflags are views of it. */
    csr_set(mstatus, MSTATUS_FS_INITIAL);
    csr_write(fcsr, (3 << 5) | 0x1f);
    CHECK_EQ(6, csr_read(frm), 3);
    CHECK_EQ(7, csr_read(fflags), 0x1f);
    csr_write(frm, 1);
    CHECK_EQ(8, csr_read(fcsr), (1 << 5) | 0x1f);
    csr_write(fflags, 0x05);
    CHECK_EQ(9, csr_read(fcsr), (1 << 5) | 0x05);
    /* 10: fcsr bits 31:8 are reserved: writes ignored, read as zero. */
    csr_write(fcsr, 0xffffffffUL);
    CHECK_EQ(10, csr_read(fcsr), 0xff);
    /* 11: frm write keeps only 3 bits; fflags only 5 bits. */
    csr_write(fcsr, 0);
    csr_write(fflags, 0xff);
    CHECK_EQ(11, csr_read(fcsr), 0x1f);
    csr_write(fcsr, 0);

    /* 12-15: mstatus.FS = Off: FP instructions and fcsr access are illegal. */
    csr_clear(mstatus, MSTATUS_FS);
    CHECK_EQ(12, csr_read(mstatus) & (MSTATUS_FS | MSTATUS_SD), 0);
    expect_m();
    EXEC_WORD(0x02b57553);
    CHECK_EQ(13, rt_mtrap.cause, CAUSE_ILLEGAL);
    CHECK_EQ(14, rt_mtrap.tval, FADD_D);
    expect_m();
    EXEC_WORD(0x00302573);
    CHECK(15, rt_mtrap.count == 1 && rt_mtrap.cause == CAUSE_ILLEGAL &&
                  rt_mtrap.tval == CSRR_A0_FCSR);

    /* 16-18: FS = Clean; an FP register write makes FS Dirty and sets SD
     * (in mstatus and in the sstatus view). */
    csr_set(mstatus, MSTATUS_FS_CLEAN);
    CHECK_EQ(16, csr_read(mstatus) & (MSTATUS_FS | MSTATUS_SD), MSTATUS_FS_CLEAN);
    asm volatile("fmv.d.x fa0, %0" ::"r"(1UL) : "fa0");
    CHECK_EQ(17, csr_read(mstatus) & (MSTATUS_FS | MSTATUS_SD), MSTATUS_FS_DIRTY | MSTATUS_SD);
    CHECK_EQ(18, csr_read(sstatus) & (MSTATUS_FS | MSTATUS_SD), MSTATUS_FS_DIRTY | MSTATUS_SD);

    /* 19-21: cycle / instret / time readable in M; instret and mcycle advance,
     * time agrees with CLINT mtime (t1 <= time <= t2). */
    u64 c1 = csr_read(cycle), i1 = csr_read(instret);
    for (volatile int k = 0; k < 100; k++) {
    }
    u64 c2 = csr_read(cycle), i2 = csr_read(instret);
    CHECK(19, i2 > i1 + 100);
    CHECK(20, c2 > c1 && csr_read(mcycle) >= c2 && csr_read(minstret) > i2);
    if (!QEMU_7_2_BUILD) { /* QEMU 7.2 -M spike does not implement the time CSR */
        u64 t1 = CLINT_MTIME;
        u64 t = csr_read(time);
        u64 t2 = CLINT_MTIME;
        CHECK(21, t1 <= t && t <= t2);
    }

    /* 22-27: counter access from S needs mcounteren; from U needs both
     * mcounteren and scounteren; otherwise illegal instruction (mtval = bits). */
    csr_write(CSR_MCOUNTEREN, 0);
    csr_write(CSR_SCOUNTEREN, 0);
    CHECK_EQ(22, counter_traps(PRV_S, s_rdcycle, RDCYCLE_A0), 1);
    CHECK_EQ(23, counter_traps(PRV_S, s_rdinstret, RDINSTRET_A0), 1);
    csr_write(CSR_MCOUNTEREN, 7);
    CHECK_EQ(24, csr_read(CSR_MCOUNTEREN) & 7, 7);
    CHECK(25, counter_traps(PRV_S, s_rdcycle, RDCYCLE_A0) == 0 &&
                  counter_traps(PRV_S, s_rdinstret, RDINSTRET_A0) == 0);
    CHECK(26, counter_traps(PRV_U, u_rdcycle, RDCYCLE_A0) == 1 &&
                  counter_traps(PRV_U, u_rdinstret, RDINSTRET_A0) == 1);
    csr_write(CSR_SCOUNTEREN, 7);
    CHECK(27, counter_traps(PRV_U, u_rdcycle, RDCYCLE_A0) == 0 &&
                  counter_traps(PRV_U, u_rdinstret, RDINSTRET_A0) == 0);
    /* 28: only the matching bit gates: CY set, IR clear in scounteren. */
    csr_write(CSR_SCOUNTEREN, 1);
    CHECK(28, counter_traps(PRV_U, u_rdcycle, RDCYCLE_A0) == 0 &&
                  counter_traps(PRV_U, u_rdinstret, RDINSTRET_A0) == 1);
    /* 29-30: time is gated by the TM bits the same way. */
    if (!QEMU_7_2_BUILD) {
        csr_write(CSR_MCOUNTEREN, 5);
        csr_write(CSR_SCOUNTEREN, 7);
        CHECK_EQ(29, counter_traps(PRV_S, s_rdtime, RDTIME_A0), 1);
        csr_write(CSR_MCOUNTEREN, 7);
        CHECK(30, counter_traps(PRV_S, s_rdtime, RDTIME_A0) == 0 &&
                      counter_traps(PRV_U, u_rdtime, RDTIME_A0) == 0);
    }
    csr_write(CSR_MCOUNTEREN, 0);
    csr_write(CSR_SCOUNTEREN, 0);

    /* 31-32: satp: a supported mode (Sv39) is accepted in M (M-mode fetches
     * are untranslated); a write with an unsupported MODE (1) is ignored
     * entirely, including the ASID and PPN fields. */
    static u64 table[512] __attribute__((aligned(4096)));
    u64 good = SATP_SV39 | ((u64)table >> 12);
    csr_write(satp, good);
    v = csr_read(satp);
    CHECK_EQ(31, v & ~(0xffffUL << 44), good);
    csr_write(satp, (1UL << 60) | (3UL << 44) | 0x12345);
    CHECK_EQ(32, csr_read(satp), v);
    csr_write(satp, 0);
    /* 33: satp = 0 (Bare) reads back 0. */
    CHECK_EQ(33, csr_read(satp), 0);

    /* 34-36: PMP: the runtime's entry 0 (TOR, RWX over all memory) reads back,
     * and S-mode can therefore access memory; S cannot access pmpaddr0. */
    CHECK_EQ(34, csr_read(pmpcfg0) & 0xff, 0x0f);
    CHECK(35, csr_read(pmpaddr0) != 0);
    CHECK_EQ(36, run_s(s_read_var, (long)&some_var), 0x1234abcd);
    expect_m();
    run_s(s_pmpaddr0, 0);
    CHECK(37, rt_mtrap.cause == CAUSE_ILLEGAL && rt_mtrap.tval == CSRR_A0_PMPADDR0);
    /* 38: rewriting the entry the way OpenSBI does (NAPOT all ones) works too. */
    csr_write(pmpaddr0, ~0UL);
    csr_write(pmpcfg0, 0x1f);
    CHECK(38, (csr_read(pmpcfg0) & 0xff) == 0x1f &&
                  run_s(s_read_var, (long)&some_var) == 0x1234abcd);
    csr_write(pmpcfg0, 0x0f);

    /* 39-40: mscratch and sscratch hold full 64-bit values. */
    u64 saved = csr_read(mscratch);
    csr_write(mscratch, 0xdeadbeefcafef00dUL);
    v = csr_read(mscratch);
    csr_write(mscratch, saved);
    CHECK_EQ(39, v, 0xdeadbeefcafef00dUL);
    csr_write(sscratch, 0x0123456789abcdefUL);
    CHECK_EQ(40, csr_read(sscratch), 0x0123456789abcdefUL);

    /* 41-42: sstatus is a restricted view of mstatus: SUM set through sstatus
     * shows in mstatus; MPP / MIE are not visible in sstatus. */
    csr_set(sstatus, MSTATUS_SUM);
    CHECK_EQ(41, csr_read(mstatus) & MSTATUS_SUM, MSTATUS_SUM);
    csr_clear(sstatus, MSTATUS_SUM);
    csr_set(mstatus, MSTATUS_MPP_M | MSTATUS_MPIE);
    CHECK_EQ(42, csr_read(sstatus) & (MSTATUS_MPP | MSTATUS_MPIE | MSTATUS_MIE), 0);
    csr_clear(mstatus, MSTATUS_MPP | MSTATUS_MPIE);

    /* 43: medeleg[11] (ecall from M) is read-only zero. */
    csr_write(medeleg, ~0UL);
    v = csr_read(medeleg);
    csr_write(medeleg, 0);
    if (!QEMU_7_2_BUILD) /* QEMU 7.2 lets medeleg[11] be written */
        CHECK_EQ(43, v & (1UL << CAUSE_ECALL_M), 0);
    /* 44: the usual delegable exceptions are writable (2, 3, 8, 12, 13, 15; bit 0
     * may be read-only zero with C, where misaligned fetches cannot happen). */
    u64 deleg = (1UL << 2) | (1UL << 3) | (1UL << 8) | (1UL << 12) |
                (1UL << 13) | (1UL << 15);
    CHECK_EQ(44, v & deleg, deleg);

    /* 45: mideleg: the supervisor interrupt bits (SSI, STI, SEI) are writable. */
    csr_write(mideleg, 0x222);
    CHECK_EQ(45, csr_read(mideleg) & 0x222, 0x222);
    /* 46: with SSI delegated, sie.SSIE is an alias of mie.SSIE. */
    csr_write(mie, 0);
    csr_set(sie, 1UL << IRQ_SSI);
    CHECK_EQ(46, csr_read(mie) & (1UL << IRQ_SSI), 1UL << IRQ_SSI);
    csr_write(mie, 0);
    csr_write(mideleg, 0);

    /* 47: mtvec in Direct mode keeps a 4-byte-aligned base. */
    csr_write(mtvec, (u64)trap_entry_m);
    CHECK_EQ(47, csr_read(mtvec), (u64)trap_entry_m);

    /* 48: an unimplemented CSR number (0x1f0, reserved S range) is illegal. */
    expect_m();
    EXEC_WORD(0x1f002573);
    CHECK(48, rt_mtrap.count == 1 && rt_mtrap.cause == CAUSE_ILLEGAL);

    /* 49: mvendorid/marchid/mimpid are readable in M (values unchecked). */
    expect_m();
    (void)csr_read(mvendorid);
    (void)csr_read(marchid);
    (void)csr_read(mimpid);
    rt_expect_mtrap = 0;
    CHECK_EQ(49, rt_mtrap.count, 0);

    rt_puts("csr_basic: all checks passed\n");
    return 0;
}
