/* misc_ext: Zicond, Zba/Zbb/Zbc/Zbs spot checks, Zihintpause, Zawrs, Svinval,
 * fence.i with self-modifying code, Zicntr.
 * Exits with 1 on success, (N<<1)|1 for the first failing check N. */
#include "vm.h"

/* Zicond: czero.eqz = OP, funct3 5, funct7 7; czero.nez = funct3 7. */
static u64 czero_eqz(u64 a, u64 b)
{
    u64 r;
    asm volatile(".insn r 0x33, 5, 7, %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static u64 czero_nez(u64 a, u64 b)
{
    u64 r;
    asm volatile(".insn r 0x33, 7, 7, %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

#define OP2(insn, a, b) ({ u64 __r; asm volatile(insn " %0, %1, %2" : "=r"(__r) : "r"((u64)(a)), "r"((u64)(b))); __r; })
#define OP1(insn, a) ({ u64 __r; asm volatile(insn " %0, %1" : "=r"(__r) : "r"((u64)(a))); __r; })
#define OPI(insn, a, imm) ({ u64 __r; asm volatile(insn " %0, %1, " #imm : "=r"(__r) : "r"((u64)(a))); __r; })

/* Self-modifying code target: starts as "li a0, 1; ret". Lives in .data
 * (RAM is executable in M-mode). */
static u32 smc_code[4] __attribute__((aligned(16))) = {0x00100513, 0x00008067, 0, 0};

static long call_smc(void)
{
    register long a0 asm("a0");
    asm volatile("jalr ra, 0(%1)" : "=r"(a0) : "r"(smc_code) : "ra", "memory");
    return a0;
}

/* An ordinary function that gets patched in place. */
__attribute__((noinline, aligned(8))) static long patch_me(void)
{
    long r;
    asm volatile(".option push\n\t.option norvc\n\taddi %0, zero, 10\n\t.option pop" : "=r"(r));
    return r;
}

#define WRS_NTO 0x00d00073u
#define WRS_STO 0x01d00073u
#define SINVAL_VMA_A0_A1 0x16b50073u  /* sinval.vma a0, a1 */
#define SFENCE_W_INVAL   0x18000073u
#define SFENCE_INVAL_IR  0x18100073u

static long s_svinval(long va)
{
    register long a0 asm("a0") = va;
    register long a1 asm("a1") = 0;
    asm volatile(".word 0x18000073\n\t"   /* sfence.w.inval */
                 ".word 0x16b50073\n\t"   /* sinval.vma a0, a1 */
                 ".word 0x18100073"       /* sfence.inval.ir */
                 ::"r"(a0), "r"(a1) : "memory");
    return *(volatile long *)va;
}
static long s_sinval_only(long x)
{
    register long a0 asm("a0") = 0;
    register long a1 asm("a1") = 0;
    asm volatile(".word 0x16b50073" ::"r"(a0), "r"(a1) : "memory");
    return 0;
}
USER_TEXT static long u_sfence_w_inval(long x)
{
    asm volatile(".word 0x18000073" ::: "memory");
    return 0;
}
static long s_wrs(long x)
{
    asm volatile(".word 0x00d00073\n\t.word 0x01d00073" ::: "memory");
    return 7;
}

static u64 pg_a[512] __attribute__((aligned(4096)));
static u64 pg_b[512] __attribute__((aligned(4096)));

int main(void)
{
    /* 1-4: Zicond: czero.eqz zeroes rd when rs2 == 0, czero.nez when rs2 != 0. */
    CHECK_EQ(1, czero_eqz(0x1234, 0), 0);
    CHECK_EQ(2, czero_eqz(0x1234, 5), 0x1234);
    CHECK_EQ(3, czero_nez(0x1234, 5), 0);
    CHECK_EQ(4, czero_nez(0x1234, 0), 0x1234);

    /* 5-9: Zba. */
    CHECK_EQ(5, OP2("sh1add", 3, 100), 106);
    CHECK_EQ(6, OP2("sh2add", 3, 100), 112);
    CHECK_EQ(7, OP2("sh3add", 3, 100), 124);
    CHECK_EQ(8, OP2("add.uw", 0xffffffff80000000UL, 1), 0x80000001UL);
    CHECK_EQ(9, OPI("slli.uw", 0xffffffff80000001UL, 4), 0x800000010UL);
    CHECK_EQ(10, OP2("sh3add.uw", 0xffffffff00000002UL, 1), 17);

    /* 11-24: Zbb. */
    u64 a = 0x0123456789abcdefUL;
    CHECK_EQ(11, OP2("andn", 0xff00ff00UL, 0x0ff00ff0UL), 0xf000f000UL);
    CHECK_EQ(12, OP2("orn", 0, ~0xffUL), 0xff);
    CHECK_EQ(13, OP2("xnor", a, a), ~0UL);
    CHECK_EQ(14, OP1("clz", 0x0010300000008000UL), 11);
    CHECK_EQ(15, OP1("ctz", 0x0010300000008000UL), 15);
    CHECK_EQ(16, OP1("cpop", 0x0010300000008000UL), 4);
    CHECK(17, OP1("clzw", 0x00000000000f0000UL) == 12 && OP1("ctzw", 0xffffffff00000000UL) == 32 &&
                  OP1("cpopw", 0xffffffff000000ffUL) == 8);
    CHECK(18, OP2("max", -5L, 3) == 3 && OP2("min", -5L, 3) == (u64)-5L &&
                  OP2("maxu", -5L, 3) == (u64)-5L && OP2("minu", -5L, 3) == 3);
    CHECK(19, OP1("sext.b", 0x80) == ~0x7fUL && OP1("sext.h", 0x8000) == ~0x7fffUL &&
                  OP1("zext.h", ~0UL) == 0xffff);
    CHECK_EQ(20, OP2("rol", a, 8), 0x23456789abcdef01UL);
    CHECK_EQ(21, OPI("rori", a, 12), 0xdef0123456789abcUL);
    CHECK_EQ(22, OP2("rorw", 0x80000001UL, 1), 0xffffffffc0000000UL);
    CHECK_EQ(23, OP1("orc.b", 0x0010000f01000000UL), 0x00ff00ffff000000UL);
    CHECK_EQ(24, OP1("rev8", a), 0xefcdab8967452301UL);

    /* 25-27: Zbc. */
    u64 b = 0xfedcba9876543210UL;
    CHECK_EQ(25, OP2("clmul", a, b), 0x40a0789828c810f0UL);
    CHECK_EQ(26, OP2("clmulh", a, b), 0x00e038d8688850b0UL);
    CHECK_EQ(27, OP2("clmulr", a, b), 0x01c071b0d110a160UL);

    /* 28-31: Zbs. */
    CHECK_EQ(28, OP2("bset", 0, 63), 1UL << 63);
    CHECK_EQ(29, OP2("bclr", ~0UL, 64 + 3), ~8UL);   /* index taken mod 64 */
    CHECK_EQ(30, OPI("binvi", 0x10, 4), 0);
    CHECK(31, OP2("bext", 0x20, 5) == 1 && OPI("bexti", 0x20, 4) == 0);

    /* 32: Zihintpause: pause is a hint (no trap, no effect). */
    rt_clear_traps();
    rt_expect_mtrap = 1;
    asm volatile("pause");
    rt_expect_mtrap = 0;
    CHECK_EQ(32, rt_mtrap.count, 0);

    /* 33-34: Zawrs: wrs.nto / wrs.sto complete without a trap, in M and in S
     * (no reservation set is held, so neither stalls). */
    rt_clear_traps();
    rt_expect_mtrap = 1;
    asm volatile(".word 0x00d00073\n\t.word 0x01d00073" ::: "memory");
    rt_expect_mtrap = 0;
    CHECK_EQ(33, rt_mtrap.count, 0);
    CHECK_EQ(34, run_s(s_wrs, 0), 7);
    /* 35: wrs.sto after lr.w (valid reservation) still completes (short timeout). */
    static volatile u32 rsv_word;
    u64 tmp;
    asm volatile("lr.w %0, (%1)\n\t.word 0x01d00073" : "=r"(tmp) : "r"(&rsv_word) : "memory");
    CHECK(35, 1);

    /* 36-38: fence.i and self-modifying code: write new code, fence.i, run it;
     * twice on a data buffer and twice on a compiled function. */
    fence_i();
    CHECK_EQ(36, call_smc(), 1);
    smc_code[0] = 0x00200513; /* li a0, 2 */
    fence_i();
    CHECK_EQ(37, call_smc(), 2);
    smc_code[0] = 0xfff00513; /* li a0, -1 */
    fence_i();
    CHECK_EQ(38, call_smc(), -1L);
    /* 39: a compressed instruction replacing the first 32-bit one: c.li a0, 5;
     * c.nop; then ret. */
    volatile u16 *half = (volatile u16 *)(void *)smc_code;
    half[0] = 0x4515; /* c.li a0, 5 */
    half[1] = 0x0001; /* c.nop */
    fence_i();
    CHECK_EQ(39, call_smc(), 5);
    /* 40-41: patch the immediate of "addi rX, zero, 10" inside patch_me. */
    CHECK_EQ(40, patch_me(), 10);
    volatile u32 *pi = (volatile u32 *)(void *)patch_me;
    int found = -1;
    for (int i = 0; i < 8; i++)
        if ((pi[i] & 0xfff0707f) == 0x00a00013) { /* addi rd, x0, 10 */
            found = i;
            break;
        }
    CHECK(41, found >= 0);
    pi[found] = (pi[found] & 0x000fffff) | (20u << 20);
    fence_i();
    CHECK_EQ(41, patch_me(), 20);
    pi[found] = (pi[found] & 0x000fffff) | (30u << 20);
    fence_i();
    CHECK_EQ(42, patch_me(), 30);

    /* 43-46: Zicntr: cycle/instret/time readable; instret counts retired
     * instructions; minstret is writable; mcountinhibit.IR stops it. */
    u64 i1, i2;
    asm volatile("rdinstret %0\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop\n\t"
                 "nop\n\tnop\n\trdinstret %1" : "=r"(i1), "=r"(i2));
    CHECK(43, i2 - i1 >= 10 && i2 - i1 <= 12);
    csr_write(minstret, 1000000);
    i1 = csr_read(minstret);
    CHECK(44, i1 >= 1000000 && i1 < 1000010);
    csr_write(mcountinhibit, 4);
    i1 = csr_read(instret);
    for (volatile int k = 0; k < 10; k++) {
    }
    i2 = csr_read(instret);
    csr_write(mcountinhibit, 0);
    CHECK_EQ(45, i2, i1);
    u64 t1 = CLINT_MTIME, t = csr_read(time), c1 = csr_read(cycle);
    for (volatile int k = 0; k < 100; k++) {
    }
    u64 t2 = CLINT_MTIME, c2 = csr_read(cycle);
    CHECK(46, t1 <= t && t <= t2 && c2 > c1);

    /* 47: Svinval in S-mode: sfence.w.inval; sinval.vma; sfence.inval.ir order
     * and invalidate like sfence.vma: a changed PTE becomes visible. */
    pg_a[0] = 0xaaaa;
    pg_b[0] = 0xbbbb;
    vm_enable(3);
    u64 *pte = vm_map(0x10000000UL, (u64)pg_a, 0, PTE_R | PTE_W | PTE_AD);
    sfence_vma();
    CHECK_EQ(47, run_s(s_svinval, 0x10000000L), 0xaaaa);
    *pte = (((u64)pg_b >> 12) << 10) | PTE_V | PTE_R | PTE_W | PTE_AD;
    CHECK_EQ(48, run_s(s_svinval, 0x10000000L), 0xbbbb);
    /* 49: with mstatus.TVM=1, sinval.vma in S is illegal (like sfence.vma). */
    csr_set(mstatus, MSTATUS_TVM);
    rt_clear_traps();
    rt_expect_mtrap = 1;
    run_s(s_sinval_only, 0);
    csr_clear(mstatus, MSTATUS_TVM);
    CHECK(49, rt_mtrap.count == 1 && rt_mtrap.cause == CAUSE_ILLEGAL &&
                  rt_mtrap.tval == SINVAL_VMA_A0_A1);
    /* 50: sfence.w.inval in U-mode is illegal. */
    rt_clear_traps();
    rt_expect_mtrap = 1;
    run_u(u_sfence_w_inval, 0);
    CHECK(50, rt_mtrap.count == 1 && rt_mtrap.cause == CAUSE_ILLEGAL &&
                  rt_mtrap.tval == SFENCE_W_INVAL);
    csr_write(satp, 0);
    sfence_vma();
    (void)SFENCE_INVAL_IR;
    (void)WRS_NTO;
    (void)WRS_STO;

    rt_puts("misc_ext: all checks passed\n");
    return 0;
}
