/* rvkvm guest runtime: M-mode bare-metal helpers shared by all guest programs.
 * Platform: RAM at 0x80000000, CLINT at 0x02000000, HTIF tohost/fromhost symbols. */
#ifndef RVKVM_RT_H
#define RVKVM_RT_H

typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;
typedef int i32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef unsigned long size_t;

/* Set to 1 only in the check-qemu builds (guests/build/qemu/): skips the few
 * checks where QEMU 7.2 is known to deviate from the current specification.
 * The committed ELFs are built with 0 (all checks strict). */
#ifdef QEMU_7_2
#define QEMU_7_2_BUILD 1
#else
#define QEMU_7_2_BUILD 0
#endif

#define STR_(x) #x
#define STR(x) STR_(x)

/* CSR access; `csr` may be a name the assembler knows or a number (0x30a). */
#define csr_read(csr) ({ u64 __v; asm volatile("csrr %0, " STR(csr) : "=r"(__v) :: "memory"); __v; })
#define csr_write(csr, val) ({ asm volatile("csrw " STR(csr) ", %0" :: "rK"((u64)(val)) : "memory"); })
#define csr_set(csr, val) ({ asm volatile("csrs " STR(csr) ", %0" :: "rK"((u64)(val)) : "memory"); })
#define csr_clear(csr, val) ({ asm volatile("csrc " STR(csr) ", %0" :: "rK"((u64)(val)) : "memory"); })
#define csr_swap(csr, val) ({ u64 __v; asm volatile("csrrw %0, " STR(csr) ", %1" : "=r"(__v) : "rK"((u64)(val)) : "memory"); __v; })

/* CSR numbers the assembler may not know by name. */
#define CSR_SENVCFG   0x10a
#define CSR_STIMECMP  0x14d
#define CSR_MENVCFG   0x30a
#define CSR_MSECCFG   0x747
#define CSR_MCOUNTEREN 0x306
#define CSR_SCOUNTEREN 0x106

/* mstatus / sstatus fields */
#define MSTATUS_SIE   (1UL << 1)
#define MSTATUS_MIE   (1UL << 3)
#define MSTATUS_SPIE  (1UL << 5)
#define MSTATUS_MPIE  (1UL << 7)
#define MSTATUS_SPP   (1UL << 8)
#define MSTATUS_MPP   (3UL << 11)
#define MSTATUS_MPP_S (1UL << 11)
#define MSTATUS_MPP_M (3UL << 11)
#define MSTATUS_FS    (3UL << 13)
#define MSTATUS_FS_INITIAL (1UL << 13)
#define MSTATUS_FS_CLEAN   (2UL << 13)
#define MSTATUS_FS_DIRTY   (3UL << 13)
#define MSTATUS_MPRV  (1UL << 17)
#define MSTATUS_SUM   (1UL << 18)
#define MSTATUS_MXR   (1UL << 19)
#define MSTATUS_TVM   (1UL << 20)
#define MSTATUS_TW    (1UL << 21)
#define MSTATUS_TSR   (1UL << 22)
#define MSTATUS_SD    (1UL << 63)

/* menvcfg / senvcfg fields */
#define ENVCFG_CBIE_FLUSH (1UL << 4)
#define ENVCFG_CBIE_INVAL (3UL << 4)
#define ENVCFG_CBIE   (3UL << 4)
#define ENVCFG_CBCFE  (1UL << 6)
#define ENVCFG_CBZE   (1UL << 7)
#define ENVCFG_PMM    (3UL << 32)
#define ENVCFG_PMM7   (2UL << 32)
#define ENVCFG_PMM16  (3UL << 32)
#define MENVCFG_ADUE  (1UL << 61)
#define MENVCFG_PBMTE (1UL << 62)
#define MENVCFG_STCE  (1UL << 63)

/* interrupt bits (mip/mie) */
#define IRQ_SSI 1
#define IRQ_MSI 3
#define IRQ_STI 5
#define IRQ_MTI 7
#define IRQ_SEI 9
#define IRQ_MEI 11
#define INTR_BIT (1UL << 63)

/* exception causes */
#define CAUSE_MISALIGNED_FETCH 0
#define CAUSE_FETCH_ACCESS 1
#define CAUSE_ILLEGAL 2
#define CAUSE_BREAKPOINT 3
#define CAUSE_MISALIGNED_LOAD 4
#define CAUSE_LOAD_ACCESS 5
#define CAUSE_MISALIGNED_STORE 6
#define CAUSE_STORE_ACCESS 7
#define CAUSE_ECALL_U 8
#define CAUSE_ECALL_S 9
#define CAUSE_ECALL_M 11
#define CAUSE_FETCH_PAGE 12
#define CAUSE_LOAD_PAGE 13
#define CAUSE_STORE_PAGE 15

#define PRV_U 0
#define PRV_S 1
#define PRV_M 3

/* CLINT */
#define CLINT_BASE     0x02000000UL
#define CLINT_MSIP     (*(volatile u32 *)(CLINT_BASE + 0x0))
#define CLINT_MTIMECMP (*(volatile u64 *)(CLINT_BASE + 0x4000))
#define CLINT_MTIME    (*(volatile u64 *)(CLINT_BASE + 0xbff8))

/* Magic a7 values for ecalls handled by the runtime's M-mode trap handler. */
#define RT_ECALL_RETURN  0x5256524eUL /* return from run_mode(): a0 = result */
#define RT_ECALL_EXIT    0x52564558UL /* exit the program: a0 = code */
#define RT_ECALL_PUTCHAR 0x52565043UL /* print a0 on the console */

/* Place a function / object where a U-mode program can reach it under paging
 * (the [__user_start, __user_end) window, page aligned). */
#define USER_TEXT __attribute__((section(".user.text"), noinline))
#define USER_DATA __attribute__((section(".user.data")))
#define USER_BSS  __attribute__((section(".user.bss")))

struct trapframe {
    u64 x[32];      /* x[2] = interrupted sp */
    u64 cause, epc, tval, status;
};

struct trap_rec {
    u64 count;      /* number of recorded traps */
    u64 cause, epc, tval, status;
};

/* Last trap recorded by the M / S handlers (only when expected or hooked). */
extern volatile struct trap_rec rt_mtrap, rt_strap;
/* When nonzero, the next synchronous trap is recorded and the faulting
 * instruction skipped (fetch faults resume at ra); interrupts are recorded
 * and their enable bit in mie/sie cleared.  Cleared by the handler. */
extern volatile int rt_expect_mtrap, rt_expect_strap;
/* Optional hooks: return nonzero if the trap was handled. */
extern int (*volatile rt_mtrap_hook)(struct trapframe *);
extern int (*volatile rt_strap_hook)(struct trapframe *);
/* Number of the check in progress, reported if an unexpected trap occurs. */
extern volatile int rt_cur_check;

extern char __user_start[], __user_end[], _end[];
extern char __sstack_top[], __strap_stack_top[], __stack_top[];
extern char trap_entry_m[], trap_entry_s[];

/* Console and exit, usable in M-mode only. */
void rt_putchar(int c);
void rt_puts(const char *s);               /* no newline added */
void rt_printf(const char *fmt, ...);      /* %s %c %d %u %x %lx %ld %lu %p %%, %016lx */
__attribute__((noreturn)) void rt_exit(int code); /* 0 = pass, N = fail test N */

/* Console and exit usable from any mode (through ecall to the M handler). */
void rt_lputchar(int c);
void rt_lprintf(const char *fmt, ...);
__attribute__((noreturn)) void rt_lexit(int code);

/* Run fn(arg) in privilege `mode` (PRV_U / PRV_S) with stack `sp` and current
 * satp/mstatus; returns fn's return value once fn returns (via an ecall from
 * the runtime's return stub in .user.text). Called from M-mode only. */
long rt_run_mode(int mode, long (*fn)(long), long arg, void *sp);
/* Convenience: S-mode with the runtime's S stack and S trap handler installed. */
long rt_run_s(long (*fn)(long), long arg);
/* U-mode with the given stack (e.g. rt_user_stack_top). */
long rt_run_u(long (*fn)(long), long arg);
extern char rt_user_stack_top[];

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* Build with -DRT_TRACE to print every check number as it starts. */
#ifdef RT_TRACE
#define RT_TRACE_CHECK(n) rt_printf("[%d]", (n))
#else
#define RT_TRACE_CHECK(n) ((void)0)
#endif

/* Check helper for M-mode code: fails the program with code n when !cond. */
#define CHECK(n, cond) do { rt_cur_check = (n); RT_TRACE_CHECK(n); if (!(cond)) rt_check_failed((n), #cond, __LINE__); } while (0)
/* Variant for M-mode code that also prints two values on failure. */
#define CHECK_EQ(n, a, b) do { u64 __a = (u64)(a), __b = (u64)(b); rt_cur_check = (n); RT_TRACE_CHECK(n); \
    if (__a != __b) rt_check_eq_failed((n), #a, __a, __b, __LINE__); } while (0)
__attribute__((noreturn)) void rt_check_failed(int n, const char *what, int line);
__attribute__((noreturn)) void rt_check_eq_failed(int n, const char *what, u64 got, u64 want, int line);

/* Reset the trap records (and expectation flags). */
void rt_clear_traps(void);

static inline void fence_i(void) { asm volatile("fence.i" ::: "memory"); }
static inline void sfence_vma(void) { asm volatile("sfence.vma zero, zero" ::: "memory"); }

#endif
