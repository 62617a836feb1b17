/* zicbo: Zicboz / Zicbom: cbo.zero semantics, menvcfg/senvcfg enables,
 * cbo.clean / cbo.flush / cbo.inval permissions, page faults.
 * Assumes a 64-byte cache block (the rvkvm machine's cboz/cbom block size).
 * Exits with 1 on success, (N<<1)|1 for the first failing check N. */
#include "vm.h"

#define BLOCK 64
#define CBO_ZERO_A0  0x0045200fu   /* cbo.zero (a0) */
#define CBO_CLEAN_A0 0x0015200fu
#define CBO_FLUSH_A0 0x0025200fu
#define CBO_INVAL_A0 0x0005200fu

static u8 buf[4 * BLOCK] __attribute__((aligned(BLOCK)));
static u8 rdonly[4096] __attribute__((aligned(4096)));

#define CBO(insn, addr) \
    ({ register u64 __a asm("a0") = (u64)(addr); asm volatile(insn " (a0)" ::"r"(__a) : "memory"); 0L; })

static long s_zero(long a) { return CBO("cbo.zero", a); }
static long s_clean(long a) { return CBO("cbo.clean", a); }
static long s_flush(long a) { return CBO("cbo.flush", a); }
static long s_inval(long a) { return CBO("cbo.inval", a); }
USER_TEXT static long u_zero(long a) { return CBO("cbo.zero", a); }
USER_TEXT static long u_clean(long a) { return CBO("cbo.clean", a); }
USER_TEXT static long u_inval(long a) { return CBO("cbo.inval", a); }

static void fill(void)
{
    for (int i = 0; i < 4 * BLOCK; i++)
        buf[i] = 0xa5;
}

/* 1 if bytes [lo, hi) of buf are all v. */
static int all(int lo, int hi, u8 v)
{
    for (int i = lo; i < hi; i++)
        if (buf[i] != v)
            return 0;
    return 1;
}

/* Run fn(arg) in `mode`; return 0 if no trap, the mcause if it trapped to M
 * (also checking mtval = insn bits for illegal instructions). */
static u64 run(int mode, long (*fn)(long), long arg, u32 bits)
{
    rt_clear_traps();
    rt_expect_mtrap = 1;
    if (mode == PRV_S)
        run_s(fn, arg);
    else
        run_u(fn, arg);
    rt_expect_mtrap = 0;
    if (!rt_mtrap.count)
        return 0;
    if (rt_mtrap.cause == CAUSE_ILLEGAL && rt_mtrap.tval != bits)
        return 1000;
    return rt_mtrap.cause;
}

int main(void)
{
    /* 1-3: M-mode cbo.zero zeroes the whole 64-byte block containing the
     * address (aligned down) and nothing else. */
    fill();
    CBO("cbo.zero", buf + BLOCK + 13);
    CHECK(1, all(BLOCK, 2 * BLOCK, 0));
    CHECK(2, all(0, BLOCK, 0xa5) && all(2 * BLOCK, 4 * BLOCK, 0xa5));
    /* 3: M-mode CBOs are always enabled (menvcfg = 0). */
    csr_write(CSR_MENVCFG, 0);
    fill();
    CBO("cbo.clean", buf);
    CBO("cbo.flush", buf);
    CBO("cbo.inval", buf + 2 * BLOCK);
    CBO("cbo.zero", buf + 3 * BLOCK);
    CHECK(3, all(0, 3 * BLOCK, 0xa5) && all(3 * BLOCK, 4 * BLOCK, 0));

    /* 4: S-mode cbo.zero with menvcfg.CBZE=0 -> illegal (mtval = bits). */
    fill();
    CHECK_EQ(4, run(PRV_S, s_zero, (long)buf, CBO_ZERO_A0), CAUSE_ILLEGAL);
    CHECK(5, all(0, 4 * BLOCK, 0xa5));
    /* 6: menvcfg.CBZE=1 enables it for S. */
    csr_write(CSR_MENVCFG, ENVCFG_CBZE);
    CHECK_EQ(6, run(PRV_S, s_zero, (long)buf + 2 * BLOCK, 0), 0);
    CHECK(7, all(2 * BLOCK, 3 * BLOCK, 0) && all(0, 2 * BLOCK, 0xa5));
    /* 8: U-mode needs senvcfg.CBZE too: menvcfg=1, senvcfg=0 -> illegal. */
    csr_write(CSR_SENVCFG, 0);
    CHECK_EQ(8, run(PRV_U, u_zero, (long)buf, CBO_ZERO_A0), CAUSE_ILLEGAL);
    /* 9: both set -> allowed in U. */
    csr_write(CSR_SENVCFG, ENVCFG_CBZE);
    fill();
    CHECK_EQ(9, run(PRV_U, u_zero, (long)buf, 0), 0);
    CHECK(10, all(0, BLOCK, 0) && all(BLOCK, 4 * BLOCK, 0xa5));
    /* 11: senvcfg=1 but menvcfg=0 -> illegal in U. */
    csr_write(CSR_MENVCFG, 0);
    CHECK_EQ(11, run(PRV_U, u_zero, (long)buf, CBO_ZERO_A0), CAUSE_ILLEGAL);
    csr_write(CSR_SENVCFG, 0);

    /* 12-13: cbo.clean / cbo.flush in S need menvcfg.CBCFE. */
    fill();
    CHECK_EQ(12, run(PRV_S, s_clean, (long)buf, CBO_CLEAN_A0), CAUSE_ILLEGAL);
    CHECK_EQ(13, run(PRV_S, s_flush, (long)buf, CBO_FLUSH_A0), CAUSE_ILLEGAL);
    csr_write(CSR_MENVCFG, ENVCFG_CBCFE);
    CHECK(14, run(PRV_S, s_clean, (long)buf, 0) == 0 && run(PRV_S, s_flush, (long)buf, 0) == 0);
    /* 15: clean/flush leave memory contents unchanged. */
    CHECK(15, all(0, 4 * BLOCK, 0xa5));
    /* 16-17: U-mode clean needs senvcfg.CBCFE as well. */
    CHECK_EQ(16, run(PRV_U, u_clean, (long)buf, CBO_CLEAN_A0), CAUSE_ILLEGAL);
    csr_write(CSR_SENVCFG, ENVCFG_CBCFE);
    CHECK_EQ(17, run(PRV_U, u_clean, (long)buf, 0), 0);
    csr_write(CSR_SENVCFG, 0);

    /* 18: cbo.inval with menvcfg.CBIE=00 -> illegal in S. */
    csr_write(CSR_MENVCFG, 0);
    CHECK_EQ(18, run(PRV_S, s_inval, (long)buf, CBO_INVAL_A0), CAUSE_ILLEGAL);
    /* 19: CBIE=01 (performs a flush) -> allowed, memory unchanged. */
    csr_write(CSR_MENVCFG, ENVCFG_CBIE_FLUSH);
    CHECK(19, run(PRV_S, s_inval, (long)buf, 0) == 0 && all(0, 4 * BLOCK, 0xa5));
    /* 20: CBIE=11 (invalidate) -> allowed. */
    csr_write(CSR_MENVCFG, ENVCFG_CBIE_INVAL);
    CHECK_EQ(20, run(PRV_S, s_inval, (long)buf, 0), 0);
    /* 21: U-mode inval: senvcfg.CBIE=00 -> illegal; 01 -> allowed. */
    csr_write(CSR_SENVCFG, 0);
    CHECK_EQ(21, run(PRV_U, u_inval, (long)buf, CBO_INVAL_A0), CAUSE_ILLEGAL);
    csr_write(CSR_SENVCFG, ENVCFG_CBIE_FLUSH);
    CHECK_EQ(22, run(PRV_U, u_inval, (long)buf, 0), 0);
    csr_write(CSR_SENVCFG, 0);
    /* 23: the reserved CBIE value 10 is not stored (WARL): reads back != 10. */
    csr_write(CSR_MENVCFG, 2UL << 4);
    CHECK(23, (csr_read(CSR_MENVCFG) & ENVCFG_CBIE) != (2UL << 4));

    /* 24-26: under Sv39, cbo.zero to a read-only page -> store/AMO page fault
     * (15) with stval inside the block; to an unmapped page -> 15 as well;
     * to a writable mapping -> zeroes through the translation. */
    csr_write(CSR_MENVCFG, ENVCFG_CBZE);
    vm_enable(3);
    vm_map(0x10000000UL, (u64)rdonly, 0, PTE_R | PTE_A);
    vm_map(0x10001000UL, (u64)buf & ~0xfffUL, 0, PTE_R | PTE_W | PTE_AD);
    sfence_vma();
    struct probe p = probe(PRV_S, OP_CBOZERO, 0x10000040UL);
    CHECK(24, p.level == 'M' && p.cause == CAUSE_STORE_PAGE && p.tval >= 0x10000040UL &&
                  p.tval < 0x10000080UL);
    p = probe(PRV_S, OP_CBOZERO, 0x10003000UL);
    CHECK(25, p.level == 'M' && p.cause == CAUSE_STORE_PAGE && p.tval >= 0x10003000UL &&
                  p.tval < 0x10003040UL);
    fill();
    p = probe(PRV_S, OP_CBOZERO, 0x10001000UL + ((u64)buf & 0xfffUL) + BLOCK);
    CHECK(26, p.level == 0 && all(BLOCK, 2 * BLOCK, 0) && all(0, BLOCK, 0xa5));
    csr_write(satp, 0);
    sfence_vma();
    csr_write(CSR_MENVCFG, 0);

    rt_puts("zicbo: all checks passed\n");
    return 0;
}
