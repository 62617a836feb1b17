/*
 * uart: an MMIO device guest (S-mode). Drives the NS16550A serial port at
 * 0x10000000 (QEMU virt's and kvmtool's address; `rvkvm run` serves it
 * from MMIO exits): programs the line (divisor latch, 8N1, FIFOs), checks
 * the scratch register reads back what it wrote, then prints by polling
 * LSR.THRE before each write to THR. Shuts down through SBI SRST (reason
 * SYSTEM_FAILURE if the device misbehaved).
 */
#define UART        0x10000000
#define THR         0
#define DLL         0
#define IER         1
#define DLM         1
#define FCR         2
#define LCR         3
#define LSR         5
#define SCR         7
#define LSR_THRE    0x20
#define SBI_EXT_SRST 0x53525354

    .section .text.start, "ax"
    .globl _start
_start:
    li      s0, UART
    sb      zero, IER(s0)           /* no interrupts: we poll */
    li      t0, 0x80
    sb      t0, LCR(s0)             /* DLAB: divisor latch */
    li      t0, 1
    sb      t0, DLL(s0)
    sb      zero, DLM(s0)
    li      t0, 0x03
    sb      t0, LCR(s0)             /* 8N1, DLAB off */
    li      t0, 0x07
    sb      t0, FCR(s0)             /* FIFOs on and cleared */

    li      t0, 0xa5
    sb      t0, SCR(s0)             /* the scratch register keeps a byte */
    lbu     t1, SCR(s0)
    bne     t0, t1, fail
    lbu     t1, LCR(s0)
    li      t0, 0x03
    bne     t0, t1, fail

    la      a0, msg
    call    uart_puts
    li      a1, 0                   /* reason: none */
    j       shutdown

fail:
    li      a1, 1                   /* reason: system failure */
shutdown:
    li      a7, SBI_EXT_SRST
    li      a6, 0
    li      a0, 0
    ecall
1:  wfi
    j       1b

/* uart_puts(a0 = NUL-terminated string) */
uart_puts:
2:  lbu     t0, 0(a0)
    beqz    t0, 4f
3:  lbu     t1, LSR(s0)             /* wait until the transmitter is free */
    andi    t1, t1, LSR_THRE
    beqz    t1, 3b
    sb      t0, THR(s0)
    addi    a0, a0, 1
    j       2b
4:  ret

    .section .rodata
msg:
    .asciz "Hello from an MMIO device guest: this text went byte by byte through the NS16550A at 0x10000000\n"
