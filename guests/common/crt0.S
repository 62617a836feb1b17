/* rvkvm guest runtime: reset entry, trap entries (M and S), mode switching. */
#define RT_ECALL_RETURN  0x5256524e
#define FRAME_SIZE (36 * 8)

    .section .text.init, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    la      sp, __stack_top
    la      t0, __mtrap_stack_top
    csrw    mscratch, t0
    la      t0, trap_entry_m
    csrw    mtvec, t0
    /* PMP entry 0: TOR over [0, 2^56) with RWX, so S/U can access memory. */
    li      t0, -1
    csrw    pmpaddr0, t0
    li      t0, 0x0f
    csrw    pmpcfg0, t0
    /* FP unit on (mstatus.FS = Initial), fcsr = 0. */
    li      t0, (1 << 13)
    csrs    mstatus, t0
    csrwi   fcsr, 0
    /* Clear .sbss/.bss. */
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  call    main
    call    rt_exit
3:  j       3b

/* Save all integer registers into a frame on the trap stack taken from
 * \scratch (which holds the trap stack top while not in a handler). */
.macro TRAP_ENTRY scratch, cause, epc, tval, status, handler, ret
    csrrw   sp, \scratch, sp
    addi    sp, sp, -FRAME_SIZE
    sd      x1, 1*8(sp)
    sd      x3, 3*8(sp)
    sd      x4, 4*8(sp)
    sd      x5, 5*8(sp)
    sd      x6, 6*8(sp)
    sd      x7, 7*8(sp)
    sd      x8, 8*8(sp)
    sd      x9, 9*8(sp)
    sd      x10, 10*8(sp)
    sd      x11, 11*8(sp)
    sd      x12, 12*8(sp)
    sd      x13, 13*8(sp)
    sd      x14, 14*8(sp)
    sd      x15, 15*8(sp)
    sd      x16, 16*8(sp)
    sd      x17, 17*8(sp)
    sd      x18, 18*8(sp)
    sd      x19, 19*8(sp)
    sd      x20, 20*8(sp)
    sd      x21, 21*8(sp)
    sd      x22, 22*8(sp)
    sd      x23, 23*8(sp)
    sd      x24, 24*8(sp)
    sd      x25, 25*8(sp)
    sd      x26, 26*8(sp)
    sd      x27, 27*8(sp)
    sd      x28, 28*8(sp)
    sd      x29, 29*8(sp)
    sd      x30, 30*8(sp)
    sd      x31, 31*8(sp)
    csrr    t0, \scratch
    sd      t0, 2*8(sp)
    sd      zero, 0(sp)
    csrr    t0, \cause
    sd      t0, 32*8(sp)
    csrr    t0, \epc
    sd      t0, 33*8(sp)
    csrr    t0, \tval
    sd      t0, 34*8(sp)
    csrr    t0, \status
    sd      t0, 35*8(sp)
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    mv      a0, sp
    call    \handler
    ld      t0, 33*8(sp)
    csrw    \epc, t0
    ld      t0, 35*8(sp)
    csrw    \status, t0
    addi    t0, sp, FRAME_SIZE
    csrw    \scratch, t0
    ld      x1, 1*8(sp)
    ld      x3, 3*8(sp)
    ld      x4, 4*8(sp)
    ld      x5, 5*8(sp)
    ld      x6, 6*8(sp)
    ld      x7, 7*8(sp)
    ld      x8, 8*8(sp)
    ld      x9, 9*8(sp)
    ld      x10, 10*8(sp)
    ld      x11, 11*8(sp)
    ld      x12, 12*8(sp)
    ld      x13, 13*8(sp)
    ld      x14, 14*8(sp)
    ld      x15, 15*8(sp)
    ld      x16, 16*8(sp)
    ld      x17, 17*8(sp)
    ld      x18, 18*8(sp)
    ld      x19, 19*8(sp)
    ld      x20, 20*8(sp)
    ld      x21, 21*8(sp)
    ld      x22, 22*8(sp)
    ld      x23, 23*8(sp)
    ld      x24, 24*8(sp)
    ld      x25, 25*8(sp)
    ld      x26, 26*8(sp)
    ld      x27, 27*8(sp)
    ld      x28, 28*8(sp)
    ld      x29, 29*8(sp)
    ld      x30, 30*8(sp)
    ld      x31, 31*8(sp)
    ld      sp, 2*8(sp)
    \ret
.endm

    .text
    .balign 64
    .globl trap_entry_m
trap_entry_m:
    TRAP_ENTRY mscratch, mcause, mepc, mtval, mstatus, rt_handle_mtrap, mret

    .balign 64
    .globl trap_entry_s
trap_entry_s:
    TRAP_ENTRY sscratch, scause, sepc, stval, sstatus, rt_handle_strap, sret

/* long rt_run_mode(int mode, long (*fn)(long), long arg, void *sp) */
    .globl rt_run_mode
rt_run_mode:
    addi    sp, sp, -112
    sd      ra, 0(sp)
    sd      s0, 8(sp)
    sd      s1, 16(sp)
    sd      s2, 24(sp)
    sd      s3, 32(sp)
    sd      s4, 40(sp)
    sd      s5, 48(sp)
    sd      s6, 56(sp)
    sd      s7, 64(sp)
    sd      s8, 72(sp)
    sd      s9, 80(sp)
    sd      s10, 88(sp)
    sd      s11, 96(sp)
    la      t0, rt_m_saved_sp
    sd      sp, 0(t0)
    csrw    mepc, a1
    li      t0, (3 << 11)
    csrc    mstatus, t0
    andi    a0, a0, 3
    slli    a0, a0, 11
    csrs    mstatus, a0
    mv      sp, a3
    /* S-mode cannot execute U pages: pick the stub matching the mode. */
    la      ra, rt_lower_return_s
    beqz    a0, 1f
    j       2f
1:  la      ra, rt_lower_return
2:  mv      a0, a2
    mret

rt_lower_return_s:
    li      a7, RT_ECALL_RETURN
    ecall
1:  j       1b

/* Reached by mret from the M handler when the lower-mode code asked to return;
 * a0 = result, sp = rt_m_saved_sp. */
    .globl rt_run_mode_ret
rt_run_mode_ret:
    ld      ra, 0(sp)
    ld      s0, 8(sp)
    ld      s1, 16(sp)
    ld      s2, 24(sp)
    ld      s3, 32(sp)
    ld      s4, 40(sp)
    ld      s5, 48(sp)
    ld      s6, 56(sp)
    ld      s7, 64(sp)
    ld      s8, 72(sp)
    ld      s9, 80(sp)
    ld      s10, 88(sp)
    ld      s11, 96(sp)
    addi    sp, sp, 112
    ret

/* Return stub for lower-mode functions: lives where U-mode may execute. */
    .section .user.text, "ax"
    .globl rt_lower_return
rt_lower_return:
    li      a7, RT_ECALL_RETURN
    ecall
1:  j       1b

    .section .user.bss, "aw", @nobits
    .balign 16
    .space  8192
    .globl rt_user_stack_top
rt_user_stack_top:

    .section .tohost, "aw", @progbits
    .balign 64
    .globl tohost
    .type tohost, @object
    .size tohost, 8
tohost: .dword 0
    .balign 64
    .globl fromhost
    .type fromhost, @object
    .size fromhost, 8
fromhost: .dword 0
    .balign 64
