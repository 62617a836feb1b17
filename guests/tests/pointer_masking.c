/* pointer_masking: Smmpm / Smnpm / Ssnpm (pointer masking v1.0).
 * QEMU 7.2 lacks these extensions: this program follows the spec (see
 * shared/reference/pointer-masking.md) and was checked against Spike.
 * Exits with 1 on success, (N<<1)|1 for the first failing check N. */
#include "vm.h"

#define TAG7(a)  (((u64)0x5a << 57) | (u64)(a))      /* garbage in bits 63:57 */
#define TAG16(a) (((u64)0xbeef << 48) | (u64)(a))    /* garbage in bits 63:48 */
#define VA_TOP   0xfffffffffffff000UL

static volatile u64 target[8] __attribute__((aligned(64)));
static volatile double dtarget = 2.5;
static u64 top_page[512] __attribute__((aligned(4096)));
USER_DATA static volatile u64 utarget[8] __attribute__((aligned(64)));

static void set_pmm(u64 menv, u64 senv, u64 msec)
{
    csr_write(CSR_MENVCFG, (csr_read(CSR_MENVCFG) & ~ENVCFG_PMM) | menv);
    csr_write(CSR_SENVCFG, (csr_read(CSR_SENVCFG) & ~ENVCFG_PMM) | senv);
    csr_write(CSR_MSECCFG, (csr_read(CSR_MSECCFG) & ~ENVCFG_PMM) | msec);
}

static void reset_target(void)
{
    for (int i = 0; i < 8; i++)
        target[i] = 0x7a00000000000000UL | i;
}

/* S-mode bodies for access kinds the generic probes do not cover. */
static long s_fld(long a)
{
    double d;
    asm volatile("fld %0, 0(%1)" : "=f"(d) : "r"(a) : "memory");
    return (long)(d * 2);
}
static long s_lrsc(long a)
{
    long v, sc;
    asm volatile("lr.d %0, (%2)\n\tsc.d %1, %3, (%2)" : "=&r"(v), "=&r"(sc) : "r"(a), "r"(99L)
                 : "memory");
    return sc == 0 ? v : -1;
}
static long s_cld(long a)
{
    register long base asm("a0") = a;
    register long v asm("a1");
    asm volatile(".option push\n\t.option rvc\n\tc.ld a1, 8(a0)\n\t.option pop" : "=r"(v) : "r"(base)
                 : "memory");
    return v;
}
static long s_ebreak(long a)
{
    asm volatile("ebreak" ::: "memory");
    return 0;
}

static void expect_fault(int n, struct probe p, u64 cause, u64 tval)
{
    rt_cur_check = n;
    if (p.level != 'M' || p.cause != cause || p.tval != tval) {
        rt_printf("FAIL check %d: level %c cause %lu tval 0x%lx (want cause %lu tval 0x%lx)\n", n,
                  p.level ? p.level : '-', p.cause, p.tval, cause, tval);
        rt_exit(n);
    }
}

static u64 expect_ok(int n, struct probe p)
{
    rt_cur_check = n;
    if (p.level) {
        rt_printf("FAIL check %d: trapped: cause %lu tval 0x%lx\n", n, p.cause, p.tval);
        rt_exit(n);
    }
    return p.value;
}

/* An M-mode load through `a` with the trap recorded (not skipped silently). */
static struct probe m_load(u64 a)
{
    return probe(PRV_M, OP_LOAD, a);
}

int main(void)
{
    u64 t = (u64)target;
    struct probe p;
    reset_target();
    set_pmm(0, 0, 0);

    /* 1-3: PMM fields (bits 33:32) of menvcfg, senvcfg and mseccfg accept 10
     * (PMLEN 7) and 11 (PMLEN 16). */
    set_pmm(ENVCFG_PMM7, ENVCFG_PMM7, ENVCFG_PMM7);
    CHECK(1, (csr_read(CSR_MENVCFG) & ENVCFG_PMM) == ENVCFG_PMM7 &&
                 (csr_read(CSR_SENVCFG) & ENVCFG_PMM) == ENVCFG_PMM7 &&
                 (csr_read(CSR_MSECCFG) & ENVCFG_PMM) == ENVCFG_PMM7);
    set_pmm(ENVCFG_PMM16, ENVCFG_PMM16, ENVCFG_PMM16);
    CHECK(2, (csr_read(CSR_MENVCFG) & ENVCFG_PMM) == ENVCFG_PMM16 &&
                 (csr_read(CSR_SENVCFG) & ENVCFG_PMM) == ENVCFG_PMM16 &&
                 (csr_read(CSR_MSECCFG) & ENVCFG_PMM) == ENVCFG_PMM16);
    /* 3: the reserved value 01 is not stored (WARL).  What is stored instead
     * is implementation-defined: Sail and QEMU keep the previous value (10),
     * Spike stores 00; both are accepted. */
    set_pmm(ENVCFG_PMM7, ENVCFG_PMM7, ENVCFG_PMM7);
    set_pmm(1UL << 32, 1UL << 32, 1UL << 32);
    {
        u64 m = csr_read(CSR_MENVCFG) & ENVCFG_PMM, s = csr_read(CSR_SENVCFG) & ENVCFG_PMM;
        u64 x = csr_read(CSR_MSECCFG) & ENVCFG_PMM;
        CHECK(3, (m == ENVCFG_PMM7 || m == 0) && (s == ENVCFG_PMM7 || s == 0) &&
                     (x == ENVCFG_PMM7 || x == 0));
        rt_printf("pointer_masking: PMM write of 01 kept %s\n",
                  m == ENVCFG_PMM7 ? "the previous value" : "00");
    }
    set_pmm(0, 0, 0);

    /* ---- S-mode, satp = Bare: physical addresses are zero-extended. ---- */
    /* 4: PMM = 00: a tagged S access is not masked -> access fault, mtval =
     * the address as given. */
    p = probe(PRV_S, OP_LOAD, TAG7(t));
    expect_fault(4, p, CAUSE_LOAD_ACCESS, TAG7(t));
    /* 5-6: menvcfg.PMM = 10 (PMLEN 7): tagged load and store reach the
     * untagged physical address. */
    set_pmm(ENVCFG_PMM7, 0, 0);
    CHECK_EQ(5, expect_ok(5, probe(PRV_S, OP_LOAD, TAG7(t + 8))), target[1]);
    expect_ok(6, probe(PRV_S, OP_STORE, TAG7(t + 16)));
    CHECK_EQ(6, target[2], PROBE_STORE_VALUE);
    /* 7: PMLEN 7 keeps bit 56: a set bit 56 is zero-extended, not dropped ->
     * the (transformed) address 2^56 + t faults, mtval = transformed. */
    p = probe(PRV_S, OP_LOAD, TAG7((1UL << 56) | t));
    expect_fault(7, p, CAUSE_LOAD_ACCESS, (1UL << 56) | t);
    /* 8: a tag in bits 63:48 is too wide for PMLEN 7: bits 56:48 survive. */
    p = probe(PRV_S, OP_LOAD, TAG16(t));
    expect_fault(8, p, CAUSE_LOAD_ACCESS, TAG16(t) & ((1UL << 57) - 1));
    /* 9: menvcfg.PMM = 11 (PMLEN 16): bits 63:48 are ignored. */
    set_pmm(ENVCFG_PMM16, 0, 0);
    CHECK_EQ(9, expect_ok(9, probe(PRV_S, OP_LOAD, TAG16(t + 24))), target[3]);
    /* 10-13: AMOs, LR/SC, FP loads and compressed loads are masked too. */
    set_pmm(ENVCFG_PMM7, 0, 0);
    reset_target();
    CHECK_EQ(10, expect_ok(10, probe(PRV_S, OP_AMO, TAG7(t + 32))), 0x7a00000000000004UL);
    CHECK_EQ(10, target[4], 0x7a00000000000005UL);
    rt_clear_traps();
    CHECK_EQ(11, run_s(s_lrsc, (long)TAG7(t + 40)), 0x7a00000000000005UL);
    CHECK_EQ(11, target[5], 99);
    CHECK_EQ(12, run_s(s_fld, (long)TAG7(&dtarget)), 5);
    CHECK_EQ(13, run_s(s_cld, (long)TAG7(t + 48)), target[7]);
    /* 14: cbo.zero through a tagged pointer zeroes the untagged block. */
    csr_set(CSR_MENVCFG, ENVCFG_CBZE);
    reset_target();
    expect_ok(14, probe(PRV_S, OP_CBOZERO, TAG7(t)));
    CHECK(14, target[0] == 0 && target[7] == 0);
    csr_clear(CSR_MENVCFG, ENVCFG_CBZE);
    reset_target();
    /* 15: instruction fetch is never masked: jumping to a tagged address
     * faults (instruction access fault, mtval = the tagged address). */
    {
        extern char probe_load_s[];
        u64 fa = TAG7((u64)probe_load_s);
        p = probe(PRV_S, OP_EXEC, fa);
        expect_fault(15, p, CAUSE_FETCH_ACCESS, fa);
    }
    /* 16-17: mstatus.MXR = 1 disables masking for S (PMLEN treated as 0), for
     * loads and stores. */
    csr_set(mstatus, MSTATUS_MXR);
    p = probe(PRV_S, OP_LOAD, TAG7(t));
    expect_fault(16, p, CAUSE_LOAD_ACCESS, TAG7(t));
    p = probe(PRV_S, OP_STORE, TAG7(t));
    expect_fault(17, p, CAUSE_STORE_ACCESS, TAG7(t));
    csr_clear(mstatus, MSTATUS_MXR);
    /* 18: menvcfg.PMM does not apply to U-mode: a U access with senvcfg.PMM=0
     * is not masked. */
    p = probe(PRV_U, OP_LOAD, TAG7((u64)utarget));
    expect_fault(18, p, CAUSE_LOAD_ACCESS, TAG7((u64)utarget));
    /* 19: senvcfg.PMM = 10 masks U-mode accesses. */
    set_pmm(0, ENVCFG_PMM7, 0);
    utarget[1] = 0x1111;
    CHECK_EQ(19, expect_ok(19, probe(PRV_U, OP_LOAD, TAG7((u64)utarget + 8))), 0x1111);
    /* 20: ... and only U-mode: S is unmasked now (menvcfg.PMM = 0). */
    p = probe(PRV_S, OP_LOAD, TAG7(t));
    expect_fault(20, p, CAUSE_LOAD_ACCESS, TAG7(t));
    set_pmm(0, 0, 0);

    /* ---- M-mode: mseccfg.PMM, always zero-extension. ---- */
    /* 21: mseccfg.PMM = 00: tagged M access faults. */
    p = m_load(TAG7(t));
    expect_fault(21, p, CAUSE_LOAD_ACCESS, TAG7(t));
    /* 22-23: mseccfg.PMM = 10 / 11: M-mode loads are masked. */
    set_pmm(0, 0, ENVCFG_PMM7);
    CHECK_EQ(22, expect_ok(22, m_load(TAG7(t + 8))), target[1]);
    set_pmm(0, 0, ENVCFG_PMM16);
    CHECK_EQ(23, expect_ok(23, m_load(TAG16(t + 8))), target[1]);
    /* 24: MXR does not disable masking for M-mode accesses. */
    csr_set(mstatus, MSTATUS_MXR);
    CHECK_EQ(24, expect_ok(24, m_load(TAG16(t + 16))), target[2]);
    csr_clear(mstatus, MSTATUS_MXR);
    /* 25: menvcfg.PMM does not affect M-mode (mseccfg.PMM = 0). */
    set_pmm(ENVCFG_PMM7, 0, 0);
    p = m_load(TAG7(t));
    expect_fault(25, p, CAUSE_LOAD_ACCESS, TAG7(t));
    /* 26: M-mode with MPRV=1, MPP=S uses menvcfg.PMM (S's setting). */
    csr_clear(mstatus, MSTATUS_MPP);
    csr_set(mstatus, MSTATUS_MPRV | MSTATUS_MPP_S);
    u64 v = *(volatile u64 *)TAG7(t + 24);
    csr_clear(mstatus, MSTATUS_MPRV | MSTATUS_MPP);
    CHECK_EQ(26, v, target[3]);
    /* 27: MPRV=1, MPP=S with menvcfg.PMM=0 and mseccfg.PMM=10: not masked. */
    set_pmm(0, 0, ENVCFG_PMM7);
    csr_set(mstatus, MSTATUS_MPRV | MSTATUS_MPP_S);
    rt_clear_traps();
    rt_expect_mtrap = 1;
    v = *(volatile u64 *)TAG7(t + 24);
    rt_expect_mtrap = 0;
    csr_clear(mstatus, MSTATUS_MPRV | MSTATUS_MPP);
    CHECK(27, rt_mtrap.count == 1 && rt_mtrap.cause == CAUSE_LOAD_ACCESS &&
                  rt_mtrap.tval == TAG7(t + 24));
    set_pmm(0, 0, 0);

    /* ---- Sv39 / Sv48: virtual addresses are sign-extended. ---- */
    vm_init(3);
    vm_map_image();
    vm_map(VA_TOP, (u64)top_page, 0, PTE_R | PTE_W | PTE_AD);
    top_page[1] = 0x70b;
    csr_write(satp, vm_satp());
    sfence_vma();
    /* 28: Sv39, PMLEN 7: tag with bit 56 = 0 -> sign-extends to the low VA. */
    set_pmm(ENVCFG_PMM7, 0, 0);
    CHECK_EQ(28, expect_ok(28, probe(PRV_S, OP_LOAD, TAG7(t + 8))), target[1]);
    /* 29: bit 56 = 1 sign-extends into bits 63:57: garbage tag on the top page. */
    CHECK_EQ(29, expect_ok(29, probe(PRV_S, OP_LOAD, (VA_TOP + 8) & ~(0x2aUL << 57))), 0x70b);
    /* 30: a transformed address that is not canonical for Sv39 -> page fault,
     * stval = the transformed (sign-extended) address. */
    p = probe(PRV_S, OP_LOAD, TAG7((1UL << 45) | t));
    expect_fault(30, p, CAUSE_LOAD_PAGE, (1UL << 45) | t);
    /* 31: MXR = 1 under Sv39: no masking -> the tagged VA is non-canonical ->
     * page fault with stval = the untransformed address. */
    csr_set(mstatus, MSTATUS_MXR);
    p = probe(PRV_S, OP_LOAD, TAG7(t));
    expect_fault(31, p, CAUSE_LOAD_PAGE, TAG7(t));
    csr_clear(mstatus, MSTATUS_MXR);
    /* 32: U-mode under Sv39 with senvcfg.PMM = 11 (PMLEN 16). */
    set_pmm(0, ENVCFG_PMM16, 0);
    utarget[2] = 0x2222;
    CHECK_EQ(32, expect_ok(32, probe(PRV_U, OP_LOAD, TAG16((u64)utarget + 16))), 0x2222);
    /* 33: PMLEN 16 under Sv39: bits 47:39 must still equal bit 38 -> with a
     * garbage bit 44, page fault with stval = sign-extended from bit 47. */
    p = probe(PRV_U, OP_LOAD, TAG16((1UL << 44) | (u64)utarget));
    expect_fault(33, p, CAUSE_LOAD_PAGE, (1UL << 44) | (u64)utarget);
    set_pmm(0, 0, 0);
    /* 34: delegated fault: stval (S-level) gets the transformed address too. */
    set_pmm(ENVCFG_PMM7, 0, 0);
    csr_write(medeleg, 1UL << CAUSE_LOAD_PAGE);
    p = probe(PRV_S, OP_LOAD, TAG7((1UL << 45) | t));
    CHECK(34, p.level == 'S' && p.cause == CAUSE_LOAD_PAGE && p.tval == ((1UL << 45) | t));
    csr_write(medeleg, 0);
    /* 35: stvec is used unmasked on trap entry: with stvec holding a tagged
     * handler address (if stvec keeps the tag), a delegated trap fetches from
     * the tagged address and faults in S (instruction page fault, to M). */
    {
        u64 tagged = TAG7((u64)trap_entry_s);
        csr_write(stvec, tagged);
        if (csr_read(stvec) == tagged) {
            csr_write(medeleg, 1UL << CAUSE_BREAKPOINT);
            rt_clear_traps();
            rt_expect_mtrap = 1;
            rt_expect_strap = 1;
            csr_write(sscratch, (u64)__strap_stack_top);
            rt_run_mode(PRV_S, s_ebreak, 0, __sstack_top);
            rt_expect_mtrap = rt_expect_strap = 0;
            csr_write(medeleg, 0);
            CHECK(35, rt_strap.count == 0 && rt_mtrap.count == 1 &&
                          rt_mtrap.cause == CAUSE_FETCH_PAGE && rt_mtrap.tval == tagged);
        } else {
            rt_printf("pointer_masking: stvec does not keep tag bits; check 35 skipped\n");
        }
        csr_write(stvec, (u64)trap_entry_s);
    }
    csr_write(satp, 0);
    sfence_vma();

    /* 36-37: Sv48 with PMLEN 16: every tag value is valid; sign-extension
     * from bit 47. */
    vm_init(4);
    vm_map_image();
    vm_map(VA_TOP, (u64)top_page, 0, PTE_R | PTE_W | PTE_AD);
    csr_write(satp, vm_satp());
    sfence_vma();
    set_pmm(ENVCFG_PMM16, 0, 0);
    CHECK_EQ(36, expect_ok(36, probe(PRV_S, OP_LOAD, TAG16(t + 8))), target[1]);
    CHECK_EQ(37, expect_ok(37, probe(PRV_S, OP_LOAD, (VA_TOP + 8) & ~(0x4321UL << 48))), 0x70b);
    set_pmm(0, 0, 0);
    csr_write(satp, 0);
    sfence_vma();

    rt_puts("pointer_masking: all checks passed\n");
    return 0;
}
