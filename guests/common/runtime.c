/* rvkvm guest runtime: HTIF console/exit, printf, trap dispatch, mode switching. */
#include "rt.h"
#include <stdarg.h>

extern volatile u64 tohost, fromhost;
extern char rt_run_mode_ret[];

volatile struct trap_rec rt_mtrap, rt_strap;
volatile int rt_expect_mtrap, rt_expect_strap;
int (*volatile rt_mtrap_hook)(struct trapframe *);
int (*volatile rt_strap_hook)(struct trapframe *);
volatile int rt_cur_check;
u64 rt_m_saved_sp;
static volatile int rt_in_mtrap;

/* ---------------------------------------------------------------- HTIF */

static void htif_send(u64 cmd)
{
    tohost = cmd;
    while (tohost != 0) {
        /* The host clears tohost once it has consumed the command. */
    }
    if (fromhost != 0)
        fromhost = 0;
}

void rt_putchar(int c)
{
    /* device 1 (console), command 1 (putchar) */
    htif_send((1UL << 56) | (1UL << 48) | (u8)c);
}

void rt_exit(int code)
{
    asm volatile("fence" ::: "memory");
    for (;;)
        tohost = ((u64)(u32)code << 1) | 1;
}

void rt_lputchar(int c)
{
    register long a0 asm("a0") = c;
    register long a7 asm("a7") = RT_ECALL_PUTCHAR;
    asm volatile("ecall" : "+r"(a0) : "r"(a7) : "memory");
}

void rt_lexit(int code)
{
    register long a0 asm("a0") = code;
    register long a7 asm("a7") = RT_ECALL_EXIT;
    for (;;)
        asm volatile("ecall" : "+r"(a0) : "r"(a7) : "memory");
}

/* -------------------------------------------------------------- printf */

static void put_num(void (*out)(int), u64 v, int base, int width, int zero, int neg)
{
    char buf[24];
    int n = 0;
    do {
        int d = (int)(v % base);
        buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    if (neg)
        buf[n++] = '-';
    while (n < width)
        buf[n++] = zero ? '0' : ' ';
    while (n)
        out(buf[--n]);
}

static void vprint(void (*out)(int), const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            out(*fmt);
            continue;
        }
        fmt++;
        int zero = 0, width = 0, lng = 0;
        if (*fmt == '0') {
            zero = 1;
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            lng = 1;
            fmt++;
        }
        switch (*fmt) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            while (*s)
                out(*s++);
            break;
        }
        case 'c':
            out(va_arg(ap, int));
            break;
        case 'd': {
            i64 v = lng ? va_arg(ap, i64) : va_arg(ap, int);
            put_num(out, v < 0 ? -(u64)v : (u64)v, 10, width, zero, v < 0);
            break;
        }
        case 'u':
            put_num(out, lng ? va_arg(ap, u64) : va_arg(ap, u32), 10, width, zero, 0);
            break;
        case 'x':
            put_num(out, lng ? va_arg(ap, u64) : va_arg(ap, u32), 16, width, zero, 0);
            break;
        case 'p':
            out('0');
            out('x');
            put_num(out, (u64)va_arg(ap, void *), 16, 0, 0, 0);
            break;
        case '%':
            out('%');
            break;
        case 0:
            return;
        default:
            out('%');
            out(*fmt);
        }
    }
}

void rt_puts(const char *s)
{
    while (*s)
        rt_putchar(*s++);
}

void rt_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprint(rt_putchar, fmt, ap);
    va_end(ap);
}

void rt_lprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprint(rt_lputchar, fmt, ap);
    va_end(ap);
}

void rt_check_failed(int n, const char *what, int line)
{
    rt_printf("FAIL check %d (line %d): %s\n", n, line, what);
    rt_exit(n);
}

void rt_check_eq_failed(int n, const char *what, u64 got, u64 want, int line)
{
    rt_printf("FAIL check %d (line %d): %s = 0x%lx, expected 0x%lx\n", n, line, what, got, want);
    rt_exit(n);
}

/* ---------------------------------------------------------------- libc */

void *memset(void *d, int c, size_t n)
{
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    u8 *p = d;
    const u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

void *memmove(void *d, const void *s, size_t n)
{
    u8 *p = d;
    const u8 *q = s;
    if (p < q) {
        while (n--)
            *p++ = *q++;
    } else {
        while (n--)
            p[n] = q[n];
    }
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const u8 *p = a, *q = b;
    for (; n; n--, p++, q++)
        if (*p != *q)
            return *p - *q;
    return 0;
}

/* --------------------------------------------------------------- traps */

void rt_clear_traps(void)
{
    rt_expect_mtrap = 0;
    rt_expect_strap = 0;
    rt_mtrap.count = rt_mtrap.cause = rt_mtrap.epc = rt_mtrap.tval = rt_mtrap.status = 0;
    rt_strap.count = rt_strap.cause = rt_strap.epc = rt_strap.tval = rt_strap.status = 0;
}

static u64 insn_len_at(u64 pc)
{
    u16 lo = *(volatile u16 *)pc;
    return (lo & 3) == 3 ? 4 : 2;
}

/* S-mode variant: the trapping code may sit on a U page (needs SUM, and MXR
 * for execute-only pages). */
static u64 insn_len_at_s(u64 pc)
{
    u64 old = csr_read(sstatus);
    csr_set(sstatus, MSTATUS_SUM | MSTATUS_MXR);
    u64 n = insn_len_at(pc);
    csr_write(sstatus, old);
    return n;
}

static int is_fetch_fault(u64 cause)
{
    return cause == CAUSE_MISALIGNED_FETCH || cause == CAUSE_FETCH_ACCESS ||
           cause == CAUSE_FETCH_PAGE;
}

static void record(volatile struct trap_rec *r, struct trapframe *tf)
{
    r->cause = tf->cause;
    r->epc = tf->epc;
    r->tval = tf->tval;
    r->status = tf->status;
    r->count++;
}

static void unexpected(const char *lvl, struct trapframe *tf, void (*pf)(const char *, ...))
{
    pf("FAIL: unexpected %s trap during check %d: cause=0x%lx epc=0x%lx tval=0x%lx status=0x%lx\n",
       lvl, rt_cur_check, tf->cause, tf->epc, tf->tval, tf->status);
}

void rt_handle_mtrap(struct trapframe *tf)
{
    u64 cause = tf->cause;
    if (rt_in_mtrap) {
        /* Trap inside the handler: report once, then exit without printing
         * (printing itself may be what traps). */
        if (rt_in_mtrap == 1) {
            rt_in_mtrap = 2;
            rt_puts("FAIL: nested M-mode trap\n");
        }
        rt_exit(rt_cur_check ? rt_cur_check : 1000);
    }
    rt_in_mtrap = 1;
    if (cause == CAUSE_ECALL_U || cause == CAUSE_ECALL_S) {
        u64 a7 = tf->x[17];
        if (a7 == RT_ECALL_RETURN) {
            /* Back to rt_run_mode's caller in M-mode, result in a0. */
            tf->epc = (u64)rt_run_mode_ret;
            tf->status |= MSTATUS_MPP_M;
            tf->x[2] = rt_m_saved_sp;
            goto out;
        }
        if (a7 == RT_ECALL_EXIT)
            rt_exit((int)tf->x[10]);
        if (a7 == RT_ECALL_PUTCHAR) {
            rt_putchar((int)tf->x[10]);
            tf->epc += 4;
            goto out;
        }
    }
    if (rt_mtrap_hook && rt_mtrap_hook(tf))
        goto out;
    if (rt_expect_mtrap) {
        rt_expect_mtrap = 0;
        record(&rt_mtrap, tf);
        if (cause & INTR_BIT) {
            csr_clear(mie, 1UL << (cause & 63));
        } else if (is_fetch_fault(cause)) {
            tf->epc = tf->x[1];
        } else {
            tf->epc += insn_len_at(tf->epc);
        }
        goto out;
    }
    unexpected("M-mode", tf, rt_printf);
    rt_exit(rt_cur_check ? rt_cur_check : 1000);
out:
    rt_in_mtrap = 0;
}

void rt_handle_strap(struct trapframe *tf)
{
    u64 cause = tf->cause;
    if (cause == CAUSE_ECALL_U) {
        u64 a7 = tf->x[17];
        if (a7 == RT_ECALL_RETURN || a7 == RT_ECALL_EXIT || a7 == RT_ECALL_PUTCHAR) {
            /* Delegated runtime ecall from U: forward it to M. */
            register u64 a0 asm("a0") = tf->x[10];
            register u64 r7 asm("a7") = a7;
            asm volatile("ecall" : "+r"(a0) : "r"(r7) : "memory");
            tf->epc += 4;
            return;
        }
    }
    if (rt_strap_hook && rt_strap_hook(tf))
        return;
    if (rt_expect_strap) {
        rt_expect_strap = 0;
        record(&rt_strap, tf);
        if (cause & INTR_BIT) {
            csr_clear(sie, 1UL << (cause & 63));
        } else if (is_fetch_fault(cause)) {
            tf->epc = tf->x[1];
        } else {
            tf->epc += insn_len_at_s(tf->epc);
        }
        return;
    }
    unexpected("S-mode", tf, rt_lprintf);
    rt_lexit(rt_cur_check ? rt_cur_check : 1001);
}

/* ---------------------------------------------------------- mode switch */

long rt_run_s(long (*fn)(long), long arg)
{
    csr_write(stvec, (u64)trap_entry_s);
    csr_write(sscratch, (u64)__strap_stack_top);
    return rt_run_mode(PRV_S, fn, arg, __sstack_top);
}

long rt_run_u(long (*fn)(long), long arg)
{
    return rt_run_mode(PRV_U, fn, arg, rt_user_stack_top);
}
