/* smc: self-modifying code. A loop rewrites the immediate of an addi in
 * its own body (on its own code page), executes fence.i and runs the new
 * instruction, ITER times; a second loop stores data into a word on its
 * own code page (code and data sharing a page). Checks both sums. */
#include "rt.h"

#ifndef ITER
#define ITER 200000
#endif

u64 smc_patch_loop(u64 n);
u64 smc_data_loop(u64 n);

/* a0 = n; returns the sum over i < n of (i & 0x7ff), each term added by
 * an addi whose immediate was just written. */
__asm__(
    "    .section .text.smc, \"ax\"\n"
    "    .option push\n"
    "    .option norvc\n"
    "    .balign 64\n"
    "    .globl smc_patch_loop\n"
    "smc_patch_loop:\n"
    "    li   t0, 0\n"
    "    li   t1, 0\n"
    "    lla  t2, smc_patched\n"
    "    lw   t3, 0(t2)\n"          /* the addi with immediate 0 */
    "1:  andi t4, t1, 0x7ff\n"
    "    slli t4, t4, 20\n"
    "    or   t4, t4, t3\n"
    "    sw   t4, 0(t2)\n"
    "    fence.i\n"
    "smc_patched:\n"
    "    addi t0, t0, 0\n"
    "    addi t1, t1, 1\n"
    "    bltu t1, a0, 1b\n"
    "    sw   t3, 0(t2)\n"          /* restore the template */
    "    fence.i\n"
    "    mv   a0, t0\n"
    "    ret\n"
    /* a0 = n; stores i into smc_word (on this page) and adds it back:
     * returns the sum over i < n of i. */
    "    .globl smc_data_loop\n"
    "smc_data_loop:\n"
    "    li   t0, 0\n"
    "    li   t1, 0\n"
    "    lla  t2, smc_word\n"
    "2:  sd   t1, 0(t2)\n"
    "    ld   t4, 0(t2)\n"
    "    add  t0, t0, t4\n"
    "    addi t1, t1, 1\n"
    "    bltu t1, a0, 2b\n"
    "    mv   a0, t0\n"
    "    ret\n"
    "    .balign 8\n"
    "smc_word: .dword 0\n"
    "    .option pop\n"
    "    .text\n");

int main(void)
{
    u64 expect = 0;
    for (u64 i = 0; i < ITER; i++)
        expect += i & 0x7ff;
    u64 i0 = csr_read(minstret);
    u64 got = smc_patch_loop(ITER);
    u64 n = csr_read(minstret) - i0;
    if (got != expect) {
        rt_printf("smc: FAIL patched sum %lu expected %lu\n", got, expect);
        return 1;
    }
    u64 got2 = smc_data_loop(ITER);
    if (got2 != (u64)ITER * (ITER - 1) / 2) {
        rt_printf("smc: FAIL data sum %lu\n", got2);
        return 2;
    }
    rt_printf("smc: %d patches ok, sum %lu, %lu instructions\n", ITER, got, n);
    return 0;
}
