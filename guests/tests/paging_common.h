/* Shared body of paging_sv39 / paging_sv48 / paging_sv57 (LEVELS = 3, 4, 5).
 * Builds page tables in M-mode, then probes single accesses from S and U.
 * Exits with 1 on success, (N<<1)|1 for the first failing check N. */
#include "vm.h"

#if LEVELS == 3
#define NAME "paging_sv39"
#define VA_BITS 39
#elif LEVELS == 4
#define NAME "paging_sv48"
#define VA_BITS 48
#else
#define NAME "paging_sv57"
#define VA_BITS 57
#endif

/* Virtual addresses used by the test (all canonical, none in the identity map). */
#define VA_RW     0x10000000UL   /* 4 KiB RW page -> pg[0] */
#define VA_RO     0x10001000UL   /* R only -> pg[1] */
#define VA_XO     0x10002000UL   /* X only -> code page */
#define VA_RWU    0x10003000UL   /* RW, U=1 -> pg[2] */
#define VA_XU     0x10004000UL   /* RX, U=1 -> code page */
#define VA_WO     0x10005000UL   /* W=1 R=0: reserved encoding -> pg[3] */
#define VA_INV    0x10006000UL   /* V=0 */
#define VA_NOA    0x10007000UL   /* A=0 -> pg[4] */
#define VA_NOD    0x10008000UL   /* A=1 D=0, RW -> pg[5] */
#define VA_RSV    0x10009000UL   /* reserved bits 60:54 set -> pg[0] */
#define VA_PBMT   0x1000a000UL   /* PBMT field tests -> pg[0] */
#define VA_PTR0   0x1000b000UL   /* level-0 PTE with XWR=0 (pointer at leaf level) */
#define VA_2M     0x20000000UL   /* 2 MiB page -> PA 0x80000000 */
#define VA_2M_BAD 0x20200000UL   /* 2 MiB page with misaligned PPN */
#define VA_NAPOT  0x30000000UL   /* 64 KiB NAPOT -> napot[] */
#define VA_1G     0x40000000UL   /* 1 GiB page -> PA 0x80000000 */
#define VA_1G_BAD 0xc0000000UL   /* 1 GiB page with misaligned PPN */
#define VA_TOP    0xfffffffffffff000UL /* top page of the upper half -> pg[6] */

static u64 pg[8][512] __attribute__((aligned(4096)));
static u32 code_page[1024] __attribute__((aligned(4096)));
static u64 napot[16][512] __attribute__((aligned(65536)));
static volatile u64 marker = 0x5ca1ab1e0ddba11UL;

static void upd(void) { sfence_vma(); }

#define EXPECT_FAULT(n, mode, op, va, want_cause)                              \
    do {                                                                       \
        struct probe __p = probe((mode), (op), (va));                          \
        rt_cur_check = (n);                                                    \
        if (__p.level != 'M' || __p.cause != (want_cause) || __p.tval != (va)) { \
            rt_printf("FAIL check %d: %s: level %c cause %lu tval 0x%lx\n", (n), \
                      #op " " #va, __p.level ? __p.level : '-', __p.cause, __p.tval); \
            rt_exit(n);                                                        \
        }                                                                      \
    } while (0)

#define EXPECT_OK(n, mode, op, va)                                             \
    ({                                                                         \
        struct probe __p = probe((mode), (op), (va));                          \
        rt_cur_check = (n);                                                    \
        if (__p.level) {                                                       \
            rt_printf("FAIL check %d: %s trapped: cause %lu tval 0x%lx\n", (n), \
                      #op " " #va, __p.cause, __p.tval);                       \
            rt_exit(n);                                                        \
        }                                                                      \
        __p.value;                                                             \
    })

int main(void)
{
    u64 *pte;
    rt_printf("%s: %d-level page tables\n", NAME, LEVELS);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 512; j++)
            pg[i][j] = ((u64)i << 56) | (u64)j | 0xab00000000UL;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 512; j++)
            napot[i][j] = 0x4e00000000000000UL | ((u64)i << 16) | (u64)j;
    code_page[0] = 0x02a00513; /* li a0, 42 */
    code_page[1] = 0x00008067; /* ret */
    fence_i();

    vm_init(LEVELS);
    vm_map_image();
    vm_map(VA_RW, (u64)pg[0], 0, PTE_R | PTE_W | PTE_AD);
    vm_map(VA_RO, (u64)pg[1], 0, PTE_R | PTE_A);
    vm_map(VA_XO, (u64)code_page, 0, PTE_X | PTE_A);
    vm_map(VA_RWU, (u64)pg[2], 0, PTE_R | PTE_W | PTE_U | PTE_AD);
    vm_map(VA_XU, (u64)code_page, 0, PTE_R | PTE_X | PTE_U | PTE_A);
    vm_map(VA_WO, (u64)pg[3], 0, PTE_W | PTE_AD);
    *vm_map(VA_INV, (u64)pg[0], 0, PTE_R) &= ~PTE_V;
    vm_map(VA_2M, 0x80000000UL, 1, PTE_RWX | PTE_AD);
    vm_map(VA_2M_BAD, 0x80001000UL, 1, PTE_R | PTE_AD);
    vm_map(VA_1G, 0x80000000UL, 2, PTE_RWX | PTE_AD);
    vm_map(VA_1G_BAD, 0x80200000UL, 2, PTE_R | PTE_AD);
    vm_map(VA_TOP, (u64)pg[6], 0, PTE_R | PTE_W | PTE_AD);
    csr_write(medeleg, 0);
    csr_write(satp, vm_satp());
    upd();

    /* 1: satp holds the mode and root PPN written (ASID bits may be 0). */
    CHECK_EQ(1, csr_read(satp) & ~(0xffffUL << 44), vm_satp());

    /* 2-3: 4 KiB page: S load/store reach the mapped physical page. */
    CHECK_EQ(2, EXPECT_OK(2, PRV_S, OP_LOAD, VA_RW + 0), pg[0][0]);
    EXPECT_OK(3, PRV_S, OP_STORE, VA_RW + 8);
    CHECK_EQ(3, pg[0][1], PROBE_STORE_VALUE);

    /* 4: M-mode with MPRV=1, MPP=S translates loads through satp. */
    csr_set(mstatus, MSTATUS_MPRV | MSTATUS_MPP_S);
    csr_clear(mstatus, MSTATUS_MPP_M & ~MSTATUS_MPP_S);
    u64 v = *(volatile u64 *)(VA_RW + 16);
    csr_clear(mstatus, MSTATUS_MPRV | MSTATUS_MPP);
    CHECK_EQ(4, v, pg[0][2]);

    /* 5-6: store to a read-only page -> store page fault (15), stval = VA;
     * loads from it work. */
    EXPECT_FAULT(5, PRV_S, OP_STORE, VA_RO + 24, CAUSE_STORE_PAGE);
    CHECK_EQ(6, EXPECT_OK(6, PRV_S, OP_LOAD, VA_RO + 24), pg[1][3]);
    /* 7: an AMO on a read-only page -> store/AMO page fault (15). */
    EXPECT_FAULT(7, PRV_S, OP_AMO, VA_RO + 32, CAUSE_STORE_PAGE);

    /* 8-9: execute-only page: fetch works, load -> load page fault (13). */
    CHECK_EQ(8, EXPECT_OK(8, PRV_S, OP_EXEC, VA_XO), 42);
    EXPECT_FAULT(9, PRV_S, OP_LOAD, VA_XO, CAUSE_LOAD_PAGE);
    /* 10: mstatus.MXR=1 makes X-only pages readable. */
    csr_set(mstatus, MSTATUS_MXR);
    CHECK_EQ(10, EXPECT_OK(10, PRV_S, OP_LOADW, VA_XO) & 0xffffffffUL, 0x02a00513);
    csr_clear(mstatus, MSTATUS_MXR);

    /* 11: fetch from a page without X -> instruction page fault (12). */
    EXPECT_FAULT(11, PRV_S, OP_EXEC, VA_RW, CAUSE_FETCH_PAGE);

    /* 12-13: U=1 page: U-mode load and fetch work. */
    CHECK_EQ(12, EXPECT_OK(12, PRV_U, OP_LOAD, VA_RWU), pg[2][0]);
    CHECK_EQ(13, EXPECT_OK(13, PRV_U, OP_EXEC, VA_XU), 42);
    /* 14-15: U-mode access to a U=0 page faults (load 13, fetch 12). */
    EXPECT_FAULT(14, PRV_U, OP_LOAD, VA_RW, CAUSE_LOAD_PAGE);
    EXPECT_FAULT(15, PRV_U, OP_EXEC, VA_XO, CAUSE_FETCH_PAGE);
    /* 16: S-mode load from a U page with SUM=0 -> load page fault. */
    EXPECT_FAULT(16, PRV_S, OP_LOAD, VA_RWU, CAUSE_LOAD_PAGE);
    /* 17: ... and store -> store page fault. */
    EXPECT_FAULT(17, PRV_S, OP_STORE, VA_RWU, CAUSE_STORE_PAGE);
    /* 18-19: with sstatus.SUM=1, S loads and stores to U pages work. */
    csr_set(mstatus, MSTATUS_SUM);
    CHECK_EQ(18, EXPECT_OK(18, PRV_S, OP_LOAD, VA_RWU + 8), pg[2][1]);
    EXPECT_OK(19, PRV_S, OP_STORE, VA_RWU + 16);
    CHECK_EQ(19, pg[2][2], PROBE_STORE_VALUE);
    /* 20: S never executes from U pages, even with SUM=1. */
    EXPECT_FAULT(20, PRV_S, OP_EXEC, VA_XU, CAUSE_FETCH_PAGE);
    csr_clear(mstatus, MSTATUS_SUM);

    /* 21-22: W=1 with R=0 is a reserved encoding: load and store fault. */
    EXPECT_FAULT(21, PRV_S, OP_LOAD, VA_WO, CAUSE_LOAD_PAGE);
    EXPECT_FAULT(22, PRV_S, OP_STORE, VA_WO, CAUSE_STORE_PAGE);
    /* 23: V=0 -> page fault. */
    EXPECT_FAULT(23, PRV_S, OP_LOAD, VA_INV, CAUSE_LOAD_PAGE);
    /* 24: a VA with no mapping at all -> page fault. */
    EXPECT_FAULT(24, PRV_S, OP_STORE, 0x18000000UL, CAUSE_STORE_PAGE);

    /* 25-26: 2 MiB superpage -> PA 0x80000000: offset bits 20:0 pass through. */
    u64 off = (u64)&marker - 0x80000000UL;
    CHECK_EQ(25, EXPECT_OK(25, PRV_S, OP_LOAD, VA_2M + off), marker);
    /* 26: 1 GiB superpage -> PA 0x80000000. */
    CHECK_EQ(26, EXPECT_OK(26, PRV_S, OP_LOAD, VA_1G + off), marker);
    /* 27-28: superpage leaves with nonzero low PPN bits are misaligned ->
     * page fault. */
    EXPECT_FAULT(27, PRV_S, OP_LOAD, VA_2M_BAD, CAUSE_LOAD_PAGE);
    EXPECT_FAULT(28, PRV_S, OP_LOAD, VA_1G_BAD + 0x100, CAUSE_LOAD_PAGE);
#if LEVELS >= 4
    /* 29: 512 GiB superpage (level 3 leaf) at VA 2^39 -> PA 0. */
    vm_map(1UL << 39, 0, 3, PTE_R | PTE_AD);
    upd();
    CHECK_EQ(29, EXPECT_OK(29, PRV_S, OP_LOAD, (1UL << 39) + (u64)&marker), marker);
#endif
#if LEVELS >= 5
    /* 30: 256 TiB superpage (level 4 leaf) at VA 2^48 -> PA 0. */
    vm_map(1UL << 48, 0, 4, PTE_R | PTE_AD);
    upd();
    CHECK_EQ(30, EXPECT_OK(30, PRV_S, OP_LOAD, (1UL << 48) + (u64)&marker), marker);
#endif

    /* 31-33: VA bits 63:VA_BITS must equal bit VA_BITS-1: otherwise a page
     * fault with stval = the VA, whatever the tables hold. */
    EXPECT_FAULT(31, PRV_S, OP_LOAD, 1UL << (VA_BITS - 1), CAUSE_LOAD_PAGE);
    EXPECT_FAULT(32, PRV_S, OP_STORE, (1UL << 63) | VA_RW, CAUSE_STORE_PAGE);
    EXPECT_FAULT(33, PRV_S, OP_LOAD, (1UL << VA_BITS) | VA_RW, CAUSE_LOAD_PAGE);
    /* 34: the top page of the upper half (sign-extended VA) translates. */
    CHECK_EQ(34, EXPECT_OK(34, PRV_S, OP_LOAD, VA_TOP + 8 * 7), pg[6][7]);

    /* 35-37: after changing a PTE, sfence.vma makes the new mapping visible
     * (done twice, with address-specific and global fences). */
    CHECK_EQ(35, EXPECT_OK(35, PRV_S, OP_LOAD, VA_RW + 32), pg[0][4]);
    pte = vm_pte(VA_RW, 0);
    *pte = (((u64)pg[7] >> 12) << 10) | PTE_V | PTE_R | PTE_W | PTE_AD;
    asm volatile("sfence.vma %0, zero" ::"r"(VA_RW) : "memory");
    CHECK_EQ(36, EXPECT_OK(36, PRV_S, OP_LOAD, VA_RW + 32), pg[7][4]);
    *pte = (((u64)pg[0] >> 12) << 10) | PTE_V | PTE_R | PTE_W | PTE_AD;
    upd();
    CHECK_EQ(37, EXPECT_OK(37, PRV_S, OP_LOAD, VA_RW + 32), pg[0][4]);

    /* 38: PTE reserved bits 60:54 nonzero -> page fault. */
    vm_map(VA_RSV, (u64)pg[0], 0, PTE_R | PTE_AD | (1UL << 54));
    upd();
    if (!QEMU_7_2_BUILD) /* QEMU 7.2 ignores PTE bits 60:54 */
        EXPECT_FAULT(38, PRV_S, OP_LOAD, VA_RSV, CAUSE_LOAD_PAGE);

    /* 39: a level-0 PTE with V=1 and XWR=0 (pointer at the last level) -> page fault. */
    vm_map(VA_PTR0, (u64)pg[0], 0, 0);
    upd();
    EXPECT_FAULT(39, PRV_S, OP_LOAD, VA_PTR0, CAUSE_LOAD_PAGE);

    /* ---- A/D bits.  Svadu is detected by writing menvcfg.ADUE. ---- */
    csr_set(CSR_MENVCFG, MENVCFG_ADUE);
    int svadu = (csr_read(CSR_MENVCFG) & MENVCFG_ADUE) != 0;
    csr_clear(CSR_MENVCFG, MENVCFG_ADUE);
    upd();
    if (!svadu)
        rt_printf("%s: menvcfg.ADUE not writable: A/D checks accept a fault or a hardware update\n",
                  NAME);
    /* 40-41: ADUE=0: access to a page with A=0 -> page fault (Svade); store to
     * a page with D=0 -> store page fault.  (Without Svadu, hardware update is
     * tolerated, but then A/D must be set in the PTE.) */
    u64 *pte_noa = vm_map(VA_NOA, (u64)pg[4], 0, PTE_R | PTE_W);
    u64 *pte_nod = vm_map(VA_NOD, (u64)pg[5], 0, PTE_R | PTE_W | PTE_A);
    upd();
    struct probe p = probe(PRV_S, OP_LOAD, VA_NOA);
    if (svadu || p.level) {
        CHECK(40, p.level == 'M' && p.cause == CAUSE_LOAD_PAGE && p.tval == VA_NOA);
        CHECK_EQ(40, *pte_noa & PTE_A, 0);
    } else {
        CHECK(40, (*pte_noa & PTE_A) && p.value == pg[4][0]);
    }
    p = probe(PRV_S, OP_STORE, VA_NOD);
    if (svadu || p.level) {
        CHECK(41, p.level == 'M' && p.cause == CAUSE_STORE_PAGE && p.tval == VA_NOD);
        CHECK_EQ(41, *pte_nod & PTE_D, 0);
    } else {
        CHECK(41, (*pte_nod & PTE_D) && pg[5][0] == PROBE_STORE_VALUE);
    }
    if (svadu) {
        /* 42-44: Svadu, menvcfg.ADUE=1: the hart sets A on a load and A+D on a
         * store, in the PTE in memory, and the accesses succeed. */
        csr_set(CSR_MENVCFG, MENVCFG_ADUE);
        *pte_noa &= ~(PTE_A | PTE_D);
        *pte_nod = (*pte_nod & ~(PTE_A | PTE_D));
        upd();
        CHECK_EQ(42, EXPECT_OK(42, PRV_S, OP_LOAD, VA_NOA + 8), pg[4][1]);
        CHECK_EQ(42, *pte_noa & (PTE_A | PTE_D), PTE_A);
        EXPECT_OK(43, PRV_S, OP_STORE, VA_NOD + 8);
        CHECK_EQ(43, *pte_nod & (PTE_A | PTE_D), PTE_A | PTE_D);
        CHECK_EQ(44, pg[5][1], PROBE_STORE_VALUE);
        csr_clear(CSR_MENVCFG, MENVCFG_ADUE);
        upd();
    }

    /* ---- Svnapot: 64 KiB NAPOT mapping (N=1, ppn[3:0] = 0b1000), all 16
     * level-0 PTEs identical. ---- */
    u64 napot_ppn = (((u64)napot >> 12) & ~0xfUL) | 0x8;
    for (int i = 0; i < 16; i++) {
        pte = vm_map(VA_NAPOT + i * PAGE_SIZE, 0, 0, PTE_R | PTE_W | PTE_AD);
        *pte = (napot_ppn << 10) | PTE_N | PTE_V | PTE_R | PTE_W | PTE_AD;
    }
    upd();
    /* 45-47: the page offset inside the 64 KiB region comes from VA bits 15:0. */
    CHECK_EQ(45, EXPECT_OK(45, PRV_S, OP_LOAD, VA_NAPOT), napot[0][0]);
    CHECK_EQ(46, EXPECT_OK(46, PRV_S, OP_LOAD, VA_NAPOT + 0x5008), napot[5][1]);
    CHECK_EQ(47, EXPECT_OK(47, PRV_S, OP_LOAD, VA_NAPOT + 0xfff8), napot[15][511]);

    /* ---- Svpbmt ---- */
    /* 48-49: menvcfg.PBMTE=1: PBMT=NC (1) and IO (2) behave like memory here. */
    csr_set(CSR_MENVCFG, MENVCFG_PBMTE);
    CHECK(48, csr_read(CSR_MENVCFG) & MENVCFG_PBMTE);
    pte = vm_map(VA_PBMT, (u64)pg[0], 0, PTE_R | PTE_W | PTE_AD | PTE_PBMT_NC);
    upd();
    CHECK_EQ(48, EXPECT_OK(48, PRV_S, OP_LOAD, VA_PBMT + 40), pg[0][5]);
    *pte = (*pte & ~PTE_PBMT_RSV) | PTE_PBMT_IO;
    upd();
    CHECK_EQ(49, EXPECT_OK(49, PRV_S, OP_LOAD, VA_PBMT + 40), pg[0][5]);
    /* 50: menvcfg.PBMTE=0: nonzero PBMT is reserved -> page fault. */
    csr_clear(CSR_MENVCFG, MENVCFG_PBMTE);
    upd();
    if (!QEMU_7_2_BUILD) /* QEMU 7.2 checks only whether Svpbmt exists, not PBMTE */
        EXPECT_FAULT(50, PRV_S, OP_LOAD, VA_PBMT + 40, CAUSE_LOAD_PAGE);

    /* 51-52: faults delegated to S (medeleg 13/15) arrive in S with stval = VA. */
    csr_write(medeleg, (1UL << CAUSE_LOAD_PAGE) | (1UL << CAUSE_STORE_PAGE));
    p = probe(PRV_U, OP_LOAD, VA_RW);
    CHECK(51, p.level == 'S' && p.cause == CAUSE_LOAD_PAGE && p.tval == VA_RW);
    p = probe(PRV_S, OP_STORE, VA_RO);
    CHECK(52, p.level == 'S' && p.cause == CAUSE_STORE_PAGE && p.tval == VA_RO);
    csr_write(medeleg, 0);

    csr_write(satp, 0);
    upd();
    rt_printf("%s: all checks passed\n", NAME);
    return 0;
}
