/* rvkvm guest test library: page tables and privilege-mode probes. */
#include "vm.h"

#define POOL_PAGES 48
static u64 pool[POOL_PAGES][512] __attribute__((aligned(4096)));
static int pool_used;
static u64 *root;
static int vm_levels;

u64 *vm_alloc_page(void)
{
    if (pool_used >= POOL_PAGES) {
        rt_printf("FAIL: page-table pool exhausted\n");
        rt_exit(rt_cur_check ? rt_cur_check : 999);
    }
    u64 *p = pool[pool_used++];
    memset(p, 0, PAGE_SIZE);
    return p;
}

void vm_init(int levels)
{
    pool_used = 0;
    vm_levels = levels;
    root = vm_alloc_page();
}

u64 vm_satp(void)
{
    u64 mode = vm_levels == 3 ? SATP_SV39 : vm_levels == 4 ? SATP_SV48 : SATP_SV57;
    return mode | ((u64)root >> 12);
}

static int vpn(u64 va, int level)
{
    return (int)((va >> (12 + 9 * level)) & 511);
}

u64 *vm_pte(u64 va, int level)
{
    u64 *t = root;
    for (int l = vm_levels - 1; l > level; l--) {
        u64 e = t[vpn(va, l)];
        if (!(e & PTE_V) || (e & PTE_RWX))
            return 0;
        t = (u64 *)((e >> 10) << 12);
    }
    return &t[vpn(va, level)];
}

u64 *vm_map(u64 va, u64 pa, int level, u64 flags)
{
    u64 *t = root;
    for (int l = vm_levels - 1; l > level; l--) {
        u64 *e = &t[vpn(va, l)];
        if (!(*e & PTE_V)) {
            u64 *n = vm_alloc_page();
            *e = (((u64)n >> 12) << 10) | PTE_V;
        }
        t = (u64 *)((*e >> 10) << 12);
    }
    u64 *leaf = &t[vpn(va, level)];
    *leaf = ((pa >> 12) << 10) | flags | PTE_V;
    return leaf;
}

void vm_map_image(void)
{
    u64 base = 0x80000000UL;
    if ((u64)_end > base + 0x200000) {
        rt_printf("FAIL: image larger than 2 MiB\n");
        rt_exit(998);
    }
    for (u64 a = base; a < base + 0x200000; a += PAGE_SIZE) {
        u64 f = PTE_RWX | PTE_AD;
        if (a >= (u64)__user_start && a < (u64)__user_end)
            f |= PTE_U;
        vm_map(a, a, 0, f);
    }
}

void vm_enable(int levels)
{
    vm_init(levels);
    vm_map_image();
    csr_write(satp, vm_satp());
    sfence_vma();
}

/* ------------------------------------------------------------- probes */

#define DEFINE_PROBES(SFX, ATTR)                                                     \
    ATTR long probe_load_##SFX(long va)                                              \
    {                                                                                \
        long v = -1;                                                                 \
        asm volatile("ld %0, 0(%1)" : "+r"(v) : "r"(va) : "memory");                 \
        return v;                                                                    \
    }                                                                                \
    ATTR long probe_loadw_##SFX(long va)                                             \
    {                                                                                \
        long v = -1;                                                                 \
        asm volatile("lw %0, 0(%1)" : "+r"(v) : "r"(va) : "memory");                 \
        return v;                                                                    \
    }                                                                                \
    ATTR long probe_store_##SFX(long va)                                             \
    {                                                                                \
        asm volatile("sd %0, 0(%1)" ::"r"(PROBE_STORE_VALUE), "r"(va) : "memory");   \
        return 0;                                                                    \
    }                                                                                \
    ATTR long probe_storew_##SFX(long va)                                            \
    {                                                                                \
        asm volatile("sw %0, 0(%1)" ::"r"(PROBE_STORE_VALUE), "r"(va) : "memory");   \
        return 0;                                                                    \
    }                                                                                \
    ATTR long probe_exec_##SFX(long va)                                              \
    {                                                                                \
        register long a0 asm("a0") = -1;                                             \
        asm volatile("jalr ra, 0(%1)" : "+r"(a0) : "r"(va) : "ra", "memory");        \
        return a0;                                                                   \
    }                                                                                \
    ATTR long probe_amo_##SFX(long va)                                               \
    {                                                                                \
        long v = -1;                                                                 \
        asm volatile("amoadd.d %0, %2, (%1)" : "+r"(v) : "r"(va), "r"(1L) : "memory"); \
        return v;                                                                    \
    }                                                                                \
    ATTR long probe_lr_##SFX(long va)                                                \
    {                                                                                \
        long v = -1;                                                                 \
        asm volatile("lr.d %0, (%1)" : "+r"(v) : "r"(va) : "memory");                \
        return v;                                                                    \
    }                                                                                \
    ATTR long probe_cbozero_##SFX(long va)                                           \
    {                                                                                \
        asm volatile("cbo.zero (%0)" ::"r"(va) : "memory");                          \
        return 0;                                                                    \
    }

#define NOINLINE __attribute__((noinline))
DEFINE_PROBES(s, NOINLINE)
DEFINE_PROBES(u, USER_TEXT)

static long (*const probes_s[])(long) = {probe_load_s, probe_store_s, probe_exec_s,
                                         probe_amo_s, probe_loadw_s, probe_storew_s,
                                         probe_cbozero_s, probe_lr_s};
static long (*const probes_u[])(long) = {probe_load_u, probe_store_u, probe_exec_u,
                                         probe_amo_u, probe_loadw_u, probe_storew_u,
                                         probe_cbozero_u, probe_lr_u};

long run_s(long (*fn)(long), long arg)
{
    return rt_run_s(fn, arg);
}

long run_u(long (*fn)(long), long arg)
{
    csr_write(stvec, (u64)trap_entry_s);
    csr_write(sscratch, (u64)__strap_stack_top);
    return rt_run_u(fn, arg);
}

struct probe probe(int mode, int op, u64 va)
{
    struct probe r;
    rt_clear_traps();
    rt_expect_mtrap = 1;
    rt_expect_strap = 1;
    if (mode == PRV_U)
        r.value = run_u(probes_u[op], va);
    else if (mode == PRV_S)
        r.value = run_s(probes_s[op], va);
    else
        r.value = probes_s[op](va);
    rt_expect_mtrap = 0;
    rt_expect_strap = 0;
    r.level = 0;
    r.cause = r.tval = r.epc = 0;
    if (rt_mtrap.count) {
        r.level = 'M';
        r.cause = rt_mtrap.cause;
        r.tval = rt_mtrap.tval;
        r.epc = rt_mtrap.epc;
    } else if (rt_strap.count) {
        r.level = 'S';
        r.cause = rt_strap.cause;
        r.tval = rt_strap.tval;
        r.epc = rt_strap.epc;
    }
    return r;
}

u64 probe_load_ok(int mode, u64 va)
{
    struct probe p = probe(mode, OP_LOAD, va);
    if (p.level) {
        rt_printf("FAIL check %d: load from 0x%lx in mode %d trapped (cause %lu tval 0x%lx)\n",
                  rt_cur_check, va, mode, p.cause, p.tval);
        rt_exit(rt_cur_check);
    }
    return p.value;
}
