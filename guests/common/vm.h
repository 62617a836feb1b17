/* rvkvm guest test library: page tables and privilege-mode probes. */
#ifndef RVKVM_VM_H
#define RVKVM_VM_H
#include "rt.h"

#define PTE_V (1UL << 0)
#define PTE_R (1UL << 1)
#define PTE_W (1UL << 2)
#define PTE_X (1UL << 3)
#define PTE_U (1UL << 4)
#define PTE_G (1UL << 5)
#define PTE_A (1UL << 6)
#define PTE_D (1UL << 7)
#define PTE_PBMT_NC (1UL << 61)
#define PTE_PBMT_IO (2UL << 61)
#define PTE_PBMT_RSV (3UL << 61)
#define PTE_N (1UL << 63)
#define PTE_RWX (PTE_R | PTE_W | PTE_X)
#define PTE_AD (PTE_A | PTE_D)

#define SATP_BARE 0UL
#define SATP_SV39 (8UL << 60)
#define SATP_SV48 (9UL << 60)
#define SATP_SV57 (10UL << 60)

#define PAGE_SIZE 4096UL

/* Page-table builder.  levels = 3 (Sv39), 4 (Sv48), 5 (Sv57). */
void vm_init(int levels);
u64 vm_satp(void);                     /* satp value for the current table (ASID 0) */
u64 *vm_alloc_page(void);              /* zeroed 4 KiB page from the pool */
/* Map one page of size 4 KiB << (9 * level) at va -> pa with PTE flags
 * (V added automatically); returns a pointer to the leaf PTE. */
u64 *vm_map(u64 va, u64 pa, int level, u64 flags);
/* Pointer to the PTE for va at `level`, or 0 if a table on the way is missing. */
u64 *vm_pte(u64 va, int level);
/* Identity-map the first 2 MiB of RAM (the program image, stacks, page pool)
 * with 4 KiB S pages (RWX, A, D), the [__user_start, __user_end) window with
 * U=1, plus CLINT.  Returns nothing; call after vm_init. */
void vm_map_image(void);
/* Build Sv39/48/57 identity tables and set satp (plus sfence.vma). */
void vm_enable(int levels);

/* Probes: run one access in privilege mode `mode` (PRV_S or PRV_U) and report
 * whether it trapped and where.  Traps may go to M (not delegated) or S. */
enum { OP_LOAD, OP_STORE, OP_EXEC, OP_AMO, OP_LOADW, OP_STOREW, OP_CBOZERO, OP_LR };
#define PROBE_STORE_VALUE 0x0123456789abcdefUL

struct probe {
    int level;      /* 0 = no trap, 'M' = trapped into M, 'S' = into S */
    u64 cause, tval, epc, value;
};
struct probe probe(int mode, int op, u64 va);
/* Convenience: expect no trap and return the loaded value. */
u64 probe_load_ok(int mode, u64 va);

/* Run fn(arg) in S-mode / U-mode with the runtime's handlers and stacks.  In
 * U-mode fn must be USER_TEXT when paging is on. */
long run_s(long (*fn)(long), long arg);
long run_u(long (*fn)(long), long arg);

#endif
