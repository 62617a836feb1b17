/*
 * hello_sbi: the smallest guest for `rvkvm run` (a KVM guest, S-mode).
 *
 * Entered as Linux boots a kernel: a0 = hart id, a1 = address of the device
 * tree. Prints through the SBI Debug Console (DBCN, EID 0x4442434E,
 * fn 0 = console_write(num_bytes, base_lo, base_hi)), which KVM forwards to
 * the VMM as a RISCV_SBI exit, then shuts down with SBI SRST (EID
 * 0x53525354, fn 0 = system_reset(type 0 = shutdown, reason 0 = none)),
 * which KVM turns into a SYSTEM_EVENT exit.
 */
#define SBI_EXT_DBCN 0x4442434E
#define SBI_EXT_SRST 0x53525354

    .section .text.start, "ax"
    .globl _start
_start:
    mv      s0, a0                  /* hart id */
    mv      s1, a1                  /* device tree */

    la      a0, hello
    call    puts

    /* Device tree check: the FDT magic 0xd00dfeed is big-endian. */
    la      a0, dtb_bad
    beqz    s1, 1f
    lwu     t0, 0(s1)
    li      t1, 0xedfe0dd0
    bne     t0, t1, 1f
    la      a0, dtb_ok
1:  call    puts

    li      a7, SBI_EXT_SRST
    li      a6, 0
    li      a0, 0                   /* SHUTDOWN */
    li      a1, 0                   /* reason: none */
    ecall
2:  wfi                             /* not reached */
    j       2b

/* puts(a0 = NUL-terminated string) through DBCN console_write. */
puts:
    mv      t0, a0
    mv      t1, a0
3:  lbu     t2, 0(t1)
    beqz    t2, 4f
    addi    t1, t1, 1
    j       3b
4:  sub     a0, t1, t0              /* num_bytes */
    mv      a1, t0                  /* base_addr_lo (physical, MMU off) */
    li      a2, 0                   /* base_addr_hi */
    li      a6, 0                   /* console_write */
    li      a7, SBI_EXT_DBCN
    ecall
    ret

    .section .rodata
hello:
    .asciz "Hello from an S-mode guest on rvkvm (SBI DBCN console)\n"
dtb_ok:
    .asciz "Device tree found at a1; shutting down through SBI SRST.\n"
dtb_bad:
    .asciz "No device tree at a1; shutting down through SBI SRST.\n"
