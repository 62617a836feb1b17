/* trap_basic: synchronous traps, trap return and delegation.
 * Exits with 1 on success, (N<<1)|1 for the first failing check N. */
#include "vm.h"

#define ILLEGAL_RESERVED 0xfe000033u   /* OP major opcode, funct7=0x7f: reserved */
#define CSRR_A0_MSTATUS  0x30002573u   /* csrrs a0, mstatus, x0 */
#define CSRR_A0_SSTATUS  0x10002573u   /* csrrs a0, sstatus, x0 */
#define CSRR_A0_SATP     0x18002573u   /* csrrs a0, satp, x0 */
#define CSRW_SATP_A0     0x18051073u   /* csrrw x0, satp, a0 */
#define CSRW_MHARTID_A0  0xf1451073u   /* csrrw x0, mhartid, a0 (read-only CSR) */
#define SFENCE_VMA       0x12000073u   /* sfence.vma x0, x0 */
#define SRET             0x10200073u
#define WFI              0x10500073u

/* Each helper returns the address of its trapping instruction. */
#define TRAP_AT(insn_asm)                                                   \
    ({                                                                      \
        u64 __pc;                                                           \
        asm volatile("lla %0, 1f\n\tli a7, 0\n1:\t" insn_asm                 \
                     : "=&r"(__pc) : : "a0", "a7", "memory");                \
        __pc;                                                               \
    })

static long s_ecall(long x) { return TRAP_AT("ecall"); }
static long s_csrr_mstatus(long x) { return TRAP_AT(".word 0x30002573"); }
static long s_sret(long x) { return TRAP_AT("sret"); }
static long s_wfi(long x) { return TRAP_AT("wfi"); }
static long s_csrr_satp(long x) { return TRAP_AT(".word 0x18002573"); }
static long s_csrw_satp(long x) { return TRAP_AT("li a0, 0\n\t.word 0x18051073"); }
static long s_sfence(long x) { return TRAP_AT("sfence.vma"); }
static long s_illegal(long x) { return TRAP_AT(".word 0xfe000033"); }
static long s_read_satp_ok(long x) { return (long)csr_read(satp); }
static long s_load(long va) { return *(volatile long *)va; }
static long s_store(long va) { *(volatile long *)va = 7; return 0; }

USER_TEXT static long u_ecall(long x) { return TRAP_AT("ecall"); }
USER_TEXT static long u_csrr_sstatus(long x) { return TRAP_AT(".word 0x10002573"); }
USER_TEXT static long u_nop(long x) { return 0x55; }

/* sret from S to S (SPP=1), returning the sstatus value read right after. */
static long s_sret_to_s(long x)
{
    u64 st;
    csr_clear(sstatus, MSTATUS_SIE);
    csr_set(sstatus, MSTATUS_SPP | MSTATUS_SPIE);
    asm volatile("lla t0, 1f\n\tcsrw sepc, t0\n\tsret\n1:\tcsrr %0, sstatus"
                 : "=r"(st) : : "t0", "memory");
    return (long)st;
}

/* sret from S to U (SPP=0) into u_ecall: the ecall reports MPP=U to M. */
static long s_sret_to_u(long x)
{
    csr_clear(sstatus, MSTATUS_SPP);
    csr_write(sepc, (u64)u_ecall);
    asm volatile("sret" ::: "memory");
    return -1;  /* not reached: u_ecall's ecall lands in M, which ends the run */
}

static void expect_m(void)
{
    rt_clear_traps();
    rt_expect_mtrap = 1;
}

static void expect_s(void)
{
    rt_clear_traps();
    rt_expect_strap = 1;
}

/* M handler hook used by check group "sret to U": treat the next ecall from U
 * as the end of the S-mode run and return 0 to rt_run_mode's caller. */
static volatile u64 hook_status, hook_cause;
static int end_run_on_ecall(struct trapframe *tf)
{
    extern char rt_run_mode_ret[];
    extern u64 rt_m_saved_sp;
    if (tf->cause != CAUSE_ECALL_U)
        return 0;
    hook_status = tf->status;
    hook_cause = tf->cause;
    tf->epc = (u64)rt_run_mode_ret;
    tf->status |= MSTATUS_MPP_M;
    tf->x[2] = rt_m_saved_sp;
    tf->x[10] = 0;
    return 1;
}

int main(void)
{
    u64 pc, st;

    /* 1: ecall from M -> mcause 11, mepc = ecall address, mtval = 0. */
    expect_m();
    pc = TRAP_AT("ecall");
    CHECK_EQ(1, rt_mtrap.count, 1);
    CHECK_EQ(2, rt_mtrap.cause, CAUSE_ECALL_M);
    CHECK_EQ(3, rt_mtrap.epc, pc);
    CHECK_EQ(4, rt_mtrap.tval, 0);
    /* 5: trap from M sets MPP=M and MPIE=old MIE (0). */
    CHECK_EQ(5, rt_mtrap.status & (MSTATUS_MPP | MSTATUS_MPIE), MSTATUS_MPP_M);

    /* 6-9: ecall from S -> mcause 9, MPP=S. */
    expect_m();
    pc = run_s(s_ecall, 0);
    CHECK_EQ(6, rt_mtrap.cause, CAUSE_ECALL_S);
    CHECK_EQ(7, rt_mtrap.epc, pc);
    CHECK_EQ(8, rt_mtrap.tval, 0);
    CHECK_EQ(9, rt_mtrap.status & MSTATUS_MPP, MSTATUS_MPP_S);

    /* 10-13: ecall from U -> mcause 8, MPP=U. */
    expect_m();
    pc = run_u(u_ecall, 0);
    CHECK_EQ(10, rt_mtrap.cause, CAUSE_ECALL_U);
    CHECK_EQ(11, rt_mtrap.epc, pc);
    CHECK_EQ(12, rt_mtrap.tval, 0);
    CHECK_EQ(13, rt_mtrap.status & MSTATUS_MPP, 0);

    /* 14-16: the all-zero 16-bit parcel is illegal; mtval = its bits (0). */
    expect_m();
    pc = TRAP_AT(".2byte 0");
    CHECK_EQ(14, rt_mtrap.cause, CAUSE_ILLEGAL);
    CHECK_EQ(15, rt_mtrap.epc, pc);
    CHECK_EQ(16, rt_mtrap.tval, 0);

    /* 17-19: reserved 32-bit encoding -> illegal, mtval = instruction bits. */
    expect_m();
    pc = TRAP_AT(".word 0xfe000033");
    CHECK_EQ(17, rt_mtrap.cause, CAUSE_ILLEGAL);
    CHECK_EQ(18, rt_mtrap.epc, pc);
    CHECK_EQ(19, rt_mtrap.tval, ILLEGAL_RESERVED);

    /* 20-22: S-mode read of an M CSR (mstatus) -> illegal, mtval = bits. */
    expect_m();
    pc = run_s(s_csrr_mstatus, 0);
    CHECK_EQ(20, rt_mtrap.cause, CAUSE_ILLEGAL);
    CHECK_EQ(21, rt_mtrap.epc, pc);
    CHECK_EQ(22, rt_mtrap.tval, CSRR_A0_MSTATUS);

    /* 23-24: U-mode read of an S CSR (sstatus) -> illegal, mtval = bits. */
    expect_m();
    pc = run_u(u_csrr_sstatus, 0);
    CHECK_EQ(23, rt_mtrap.cause, CAUSE_ILLEGAL);
    CHECK_EQ(24, rt_mtrap.tval, CSRR_A0_SSTATUS);

    /* 25-26: write to a read-only CSR (mhartid, csr[11:10]=11) -> illegal. */
    expect_m();
    pc = TRAP_AT(".word 0xf1451073");
    CHECK_EQ(25, rt_mtrap.cause, CAUSE_ILLEGAL);
    CHECK_EQ(26, rt_mtrap.tval, CSRW_MHARTID_A0);

    /* 27-29: ebreak -> cause 3, mepc = its address, mtval = address or 0. */
    expect_m();
    pc = TRAP_AT("ebreak");
    CHECK_EQ(27, rt_mtrap.cause, CAUSE_BREAKPOINT);
    CHECK_EQ(28, rt_mtrap.epc, pc);
    CHECK(29, rt_mtrap.tval == pc || rt_mtrap.tval == 0);

    /* 30-32: c.ebreak (16-bit) -> cause 3; the handler skips 2 bytes. */
    expect_m();
    pc = TRAP_AT("c.ebreak");
    CHECK_EQ(30, rt_mtrap.cause, CAUSE_BREAKPOINT);
    CHECK_EQ(31, rt_mtrap.epc, pc);
    CHECK(32, rt_mtrap.tval == pc || rt_mtrap.tval == 0);

    /* 33-35: mret with MPP=M: MIE <- MPIE (0), MPIE <- 1, MPP <- U (least
     * privileged supported mode). */
    csr_clear(mie, ~0UL);
    csr_clear(mstatus, MSTATUS_MIE | MSTATUS_MPIE);
    csr_set(mstatus, MSTATUS_MPP_M);
    asm volatile("lla t0, 1f\n\tcsrw mepc, t0\n\tmret\n1:" ::: "t0", "memory");
    st = csr_read(mstatus);
    CHECK_EQ(33, st & MSTATUS_MIE, 0);
    CHECK_EQ(34, st & MSTATUS_MPIE, MSTATUS_MPIE);
    CHECK_EQ(35, st & MSTATUS_MPP, 0);
    /* 36: mret with MPIE=1 sets MIE=1 (no interrupt enabled in mie). */
    csr_set(mstatus, MSTATUS_MPP_M | MSTATUS_MPIE);
    asm volatile("lla t0, 1f\n\tcsrw mepc, t0\n\tmret\n1:" ::: "t0", "memory");
    st = csr_read(mstatus);
    CHECK_EQ(36, st & (MSTATUS_MIE | MSTATUS_MPIE), MSTATUS_MIE | MSTATUS_MPIE);
    csr_clear(mstatus, MSTATUS_MIE);

    /* 37-38: mret to S clears MPRV (priv 1.12); ecall from S then shows
     * MPIE = MIE at that time (1, set from MPIE by the mret). */
    csr_set(mstatus, MSTATUS_MPRV | MSTATUS_MPIE);
    expect_m();
    run_s(s_ecall, 0);
    if (!QEMU_7_2_BUILD) /* QEMU 7.2 does not clear MPRV on mret (priv 1.12 rule) */
        CHECK_EQ(37, rt_mtrap.status & MSTATUS_MPRV, 0);
    CHECK_EQ(38, rt_mtrap.status & (MSTATUS_MPIE | MSTATUS_MIE), MSTATUS_MPIE);
    csr_clear(mstatus, MSTATUS_MPRV | MSTATUS_MIE | MSTATUS_MPIE);

    /* 39-41: sret with SPP=S, SPIE=1: SIE <- 1, SPIE <- 1, SPP <- U. */
    csr_write(sie, 0);
    st = run_s(s_sret_to_s, 0);
    CHECK_EQ(39, st & MSTATUS_SIE, MSTATUS_SIE);
    CHECK_EQ(40, st & MSTATUS_SPIE, MSTATUS_SPIE);
    CHECK_EQ(41, st & MSTATUS_SPP, 0);
    csr_clear(mstatus, MSTATUS_SIE);

    /* 42-43: sret with SPP=U enters U-mode (ecall from there has cause 8). */
    rt_mtrap_hook = end_run_on_ecall;
    hook_cause = 0;
    run_s(s_sret_to_u, 0);
    rt_mtrap_hook = 0;
    CHECK_EQ(42, hook_cause, CAUSE_ECALL_U);
    CHECK_EQ(43, hook_status & MSTATUS_MPP, 0);

    /* 44-48: medeleg[8]: ecall from U goes to S with scause 8, sepc, stval 0,
     * sstatus.SPP = 0 (from U); nothing reaches M. */
    csr_write(medeleg, 1UL << CAUSE_ECALL_U);
    CHECK_EQ(44, csr_read(medeleg) & (1UL << CAUSE_ECALL_U), 1UL << CAUSE_ECALL_U);
    rt_clear_traps();
    rt_expect_strap = 1;
    rt_expect_mtrap = 1;
    pc = run_u(u_ecall, 0);
    CHECK_EQ(45, rt_mtrap.count, 0);
    CHECK_EQ(46, rt_strap.cause, CAUSE_ECALL_U);
    CHECK_EQ(47, rt_strap.epc, pc);
    CHECK_EQ(48, rt_strap.tval | (rt_strap.status & MSTATUS_SPP), 0);
    /* 49: a non-delegated trap from U (illegal CSR access) still goes to M. */
    expect_m();
    run_u(u_csrr_sstatus, 0);
    CHECK_EQ(49, rt_mtrap.cause, CAUSE_ILLEGAL);
    /* 50: runtime ecalls from U forwarded by the S handler still work. */
    CHECK_EQ(50, run_u(u_nop, 0), 0x55);

    /* 51-52: traps taken in M are never delegated: M-mode illegal instruction
     * with medeleg[2]=1 still traps to M. */
    csr_write(medeleg, 1UL << CAUSE_ILLEGAL);
    expect_m();
    TRAP_AT(".word 0xfe000033");
    CHECK_EQ(51, rt_mtrap.count, 1);
    CHECK_EQ(52, rt_mtrap.cause, CAUSE_ILLEGAL);
    /* 53-55: illegal instruction in S with medeleg[2]=1 goes to S, stval = bits,
     * SPP = 1 (from S). */
    expect_s();
    pc = run_s(s_illegal, 0);
    CHECK_EQ(53, rt_strap.cause, CAUSE_ILLEGAL);
    CHECK_EQ(54, rt_strap.tval, ILLEGAL_RESERVED);
    CHECK_EQ(55, rt_strap.status & MSTATUS_SPP, MSTATUS_SPP);
    csr_write(medeleg, 0);

    /* 56-63: page faults delegated to S (medeleg 12, 13, 15) report scause,
     * sepc and stval = faulting VA. */
    vm_enable(3);
    static u64 ro_page[512] __attribute__((aligned(4096)));
    u64 ro_va = 0x40000000UL, unmapped_va = 0x40001008UL;
    vm_map(ro_va, (u64)ro_page, 0, PTE_R | PTE_A);
    sfence_vma();
    csr_write(medeleg, (1UL << 12) | (1UL << 13) | (1UL << 15));
    struct probe p = probe(PRV_S, OP_LOAD, unmapped_va);
    CHECK_EQ(56, p.level, 'S');
    CHECK_EQ(57, p.cause, CAUSE_LOAD_PAGE);
    CHECK_EQ(58, p.tval, unmapped_va);
    p = probe(PRV_S, OP_STORE, ro_va + 16);
    CHECK_EQ(59, p.level, 'S');
    CHECK_EQ(60, p.cause, CAUSE_STORE_PAGE);
    CHECK_EQ(61, p.tval, ro_va + 16);
    p = probe(PRV_S, OP_EXEC, ro_va);
    CHECK_EQ(62, p.cause, CAUSE_FETCH_PAGE);
    CHECK_EQ(63, p.tval, ro_va);
    /* 64-65: without delegation the same fault goes to M (mcause 13). */
    csr_write(medeleg, 0);
    p = probe(PRV_S, OP_LOAD, unmapped_va);
    CHECK_EQ(64, p.level, 'M');
    CHECK_EQ(65, p.cause, CAUSE_LOAD_PAGE);
    csr_write(satp, 0);
    sfence_vma();

    /* 66-67: mstatus.TSR=1: sret in S -> illegal instruction. */
    csr_set(mstatus, MSTATUS_TSR);
    expect_m();
    pc = run_s(s_sret, 0);
    CHECK_EQ(66, rt_mtrap.cause, CAUSE_ILLEGAL);
    CHECK_EQ(67, rt_mtrap.epc, pc);
    csr_clear(mstatus, MSTATUS_TSR);

    /* 68-69: mstatus.TW=1: wfi in S (nothing pending) -> illegal instruction. */
    csr_set(mstatus, MSTATUS_TW);
    expect_m();
    pc = run_s(s_wfi, 0);
    CHECK_EQ(68, rt_mtrap.cause, CAUSE_ILLEGAL);
    CHECK_EQ(69, rt_mtrap.tval == WFI || rt_mtrap.tval == 0, 1);
    csr_clear(mstatus, MSTATUS_TW);

    /* 70-75: mstatus.TVM=1: satp read/write and sfence.vma in S are illegal. */
    csr_set(mstatus, MSTATUS_TVM);
    expect_m();
    run_s(s_csrr_satp, 0);
    CHECK_EQ(70, rt_mtrap.cause, CAUSE_ILLEGAL);
    CHECK_EQ(71, rt_mtrap.tval, CSRR_A0_SATP);
    expect_m();
    run_s(s_csrw_satp, 0);
    CHECK_EQ(72, rt_mtrap.cause, CAUSE_ILLEGAL);
    CHECK_EQ(73, rt_mtrap.tval, CSRW_SATP_A0);
    expect_m();
    run_s(s_sfence, 0);
    CHECK_EQ(74, rt_mtrap.cause, CAUSE_ILLEGAL);
    CHECK_EQ(75, rt_mtrap.tval, SFENCE_VMA);
    /* 76: TVM does not affect M-mode satp access. */
    csr_write(satp, 0);
    CHECK_EQ(76, csr_read(satp), 0);
    csr_clear(mstatus, MSTATUS_TVM);
    /* 77: with TVM=0, S may read satp (no trap). */
    rt_clear_traps();
    CHECK_EQ(77, run_s(s_read_satp_ok, 0), 0);
    (void)s_load;
    (void)s_store;

    rt_puts("trap_basic: all checks passed\n");
    return 0;
}
