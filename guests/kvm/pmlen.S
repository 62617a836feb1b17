/*
 * pmlen: pointer masking for a KVM guest through SBI FWFT (S-mode).
 *
 * Asks the SBI Firmware Features extension (FWFT, EID 0x46574654) to set
 * POINTER_MASKING_PMLEN (feature 5) to 7, reads it back, then uses tagged
 * pointers: with PMLEN 7 and the MMU off, the top 7 bits of a data address
 * are ignored, so a store through a tagged pointer lands at the untagged
 * address. Finally it turns masking off again and reads back 0.
 *
 * It first probes FWFT (SBI base sbi_probe_extension): on a VM without it
 * (the VMM disabled SBI extension FWFT, or a kernel ABI older than FWFT) it
 * says FWFT is absent and shuts down cleanly. On a VM without Smnpm (the VMM
 * disabled ISA extension SMNPM, or the host has no Ssnpm) FWFT answers
 * NOT_SUPPORTED; the guest says so and shuts down cleanly. Any other
 * surprise shuts down with reason SYSTEM_FAILURE.
 * Console: SBI DBCN console_write.
 */
#define SBI_EXT_BASE 0x10
#define SBI_BASE_PROBE_EXTENSION 3
#define SBI_EXT_DBCN 0x4442434E
#define SBI_EXT_SRST 0x53525354
#define SBI_EXT_FWFT 0x46574654
#define FWFT_SET 0
#define FWFT_GET 1
#define FWFT_POINTER_MASKING_PMLEN 5
#define SBI_ERR_NOT_SUPPORTED -2
#define SRST_REASON_NONE 0
#define SRST_REASON_FAILURE 1

    .section .text.start, "ax"
    .globl _start
_start:
    /* sbi_probe_extension(FWFT): a1 = 0 when the VM has no FWFT */
    li      a0, SBI_EXT_FWFT
    li      a6, SBI_BASE_PROBE_EXTENSION
    li      a7, SBI_EXT_BASE
    ecall
    bnez    a0, fail
    beqz    a1, no_fwft

    la      a0, msg_ask
    call    puts

    /* fwft_set(POINTER_MASKING_PMLEN, 7, flags 0) */
    li      a0, FWFT_POINTER_MASKING_PMLEN
    li      a1, 7
    li      a2, 0
    li      a6, FWFT_SET
    li      a7, SBI_EXT_FWFT
    ecall
    li      t0, SBI_ERR_NOT_SUPPORTED
    beq     a0, t0, not_supported
    bnez    a0, fail

    /* fwft_get(POINTER_MASKING_PMLEN) must say 7 */
    li      a0, FWFT_POINTER_MASKING_PMLEN
    li      a6, FWFT_GET
    li      a7, SBI_EXT_FWFT
    ecall
    bnez    a0, fail
    li      t0, 7
    bne     a1, t0, fail
    la      a0, msg_on
    call    puts

    /* Store through a pointer tagged 0x5a in bits 63:57, load untagged. */
    la      s0, buffer
    li      t0, 0x5a
    slli    t0, t0, 57
    or      s1, s0, t0              /* tagged alias of buffer */
    li      t1, 0x0123456789abcdef
    sd      t1, 0(s1)
    ld      t2, 0(s0)
    bne     t1, t2, fail
    /* and the other way: store untagged, load with another tag */
    li      t1, 0x7e57ab1e
    sw      t1, 8(s0)
    li      t0, 0x33
    slli    t0, t0, 57
    or      s2, s0, t0
    lwu     t2, 8(s2)
    bne     t1, t2, fail
    la      a0, msg_tagged
    call    puts

    /* fwft_set(POINTER_MASKING_PMLEN, 0): masking off, get says 0 */
    li      a0, FWFT_POINTER_MASKING_PMLEN
    li      a1, 0
    li      a2, 0
    li      a6, FWFT_SET
    li      a7, SBI_EXT_FWFT
    ecall
    bnez    a0, fail
    li      a0, FWFT_POINTER_MASKING_PMLEN
    li      a6, FWFT_GET
    li      a7, SBI_EXT_FWFT
    ecall
    bnez    a0, fail
    bnez    a1, fail
    la      a0, msg_off
    call    puts
    li      a1, SRST_REASON_NONE
    j       shutdown

no_fwft:
    la      a0, msg_no_fwft
    call    puts
    li      a1, SRST_REASON_NONE
    j       shutdown

not_supported:
    la      a0, msg_unsupported
    call    puts
    li      a1, SRST_REASON_NONE
    j       shutdown

fail:
    la      a0, msg_fail
    call    puts
    li      a1, SRST_REASON_FAILURE

shutdown:                           /* a1 = reason */
    li      a7, SBI_EXT_SRST
    li      a6, 0
    li      a0, 0                   /* SHUTDOWN */
    ecall
1:  wfi
    j       1b

/* puts(a0 = NUL-terminated string) through DBCN console_write. */
puts:
    mv      t0, a0
    mv      t1, a0
2:  lbu     t2, 0(t1)
    beqz    t2, 3f
    addi    t1, t1, 1
    j       2b
3:  sub     a0, t1, t0
    mv      a1, t0
    li      a2, 0
    li      a6, 0
    li      a7, SBI_EXT_DBCN
    ecall
    ret

    .section .rodata
msg_no_fwft:
    .asciz "pmlen: SBI FWFT is absent (sbi_probe_extension says 0): this VM cannot ask for pointer masking\n"
msg_ask:
    .asciz "pmlen: asking SBI FWFT for POINTER_MASKING_PMLEN = 7\n"
msg_on:
    .asciz "pmlen: PMLEN is 7 (fwft_get agrees)\n"
msg_tagged:
    .asciz "pmlen: tagged pointers work: bits 63:57 of data addresses are ignored\n"
msg_off:
    .asciz "pmlen: PMLEN back to 0; done\n"
msg_unsupported:
    .asciz "pmlen: FWFT says NOT_SUPPORTED: this VM has no pointer masking (Smnpm)\n"
msg_fail:
    .asciz "pmlen: FAILED: unexpected FWFT answer or tagged access\n"

    .section .bss
    .balign 16
buffer:
    .skip 16
