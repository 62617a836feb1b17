/*
 * tagptr: the tagged-address ABI from Linux user space (riscv64).
 *
 * Turns on pointer masking for this process with
 * prctl(PR_SET_TAGGED_ADDR_CTRL, PR_TAGGED_ADDR_ENABLE | (7 << PR_PMLEN_SHIFT))
 * (Documentation/arch/riscv/uabi.rst: the kernel picks the smallest PMLEN the
 * hart supports that is at least 7; needs Supm, i.e. Ssnpm under an S-mode
 * kernel), reads the setting back, then stores and loads through pointers
 * whose top 7 bits carry tags and hands a tagged buffer to write(2).
 *
 * Exit status: 0 all worked; 2 the prctl was refused (no pointer masking
 * offered: the errno is printed); 1 a check failed. Freestanding (raw
 * syscalls, no libc) so the binary is small and starts in few instructions.
 */
#define SYS_write 64
#define SYS_exit_group 94
#define SYS_prctl 167
#define PR_SET_TAGGED_ADDR_CTRL 55
#define PR_GET_TAGGED_ADDR_CTRL 56
#define PR_TAGGED_ADDR_ENABLE 1UL
#define PR_PMLEN_SHIFT 24
#define PR_PMLEN_MASK (0x7fUL << PR_PMLEN_SHIFT)

typedef unsigned long u64;

static long syscall5(long n, long a0, long a1, long a2, long a3, long a4)
{
	register long r_a0 __asm__("a0") = a0;
	register long r_a1 __asm__("a1") = a1;
	register long r_a2 __asm__("a2") = a2;
	register long r_a3 __asm__("a3") = a3;
	register long r_a4 __asm__("a4") = a4;
	register long r_a7 __asm__("a7") = n;
	__asm__ volatile("ecall"
			 : "+r"(r_a0)
			 : "r"(r_a1), "r"(r_a2), "r"(r_a3), "r"(r_a4), "r"(r_a7)
			 : "memory");
	return r_a0;
}

static unsigned long slen(const char *s)
{
	unsigned long n = 0;
	while (s[n])
		n++;
	return n;
}

static void put(const char *s)
{
	syscall5(SYS_write, 1, (long)s, (long)slen(s), 0, 0);
}

static void put_num(long v)
{
	char buf[24];
	int i = sizeof(buf) - 1;
	unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;
	buf[i] = 0;
	do {
		buf[--i] = '0' + u % 10;
		u /= 10;
	} while (u);
	if (v < 0)
		buf[--i] = '-';
	put(buf + i);
}

static __attribute__((noreturn)) void quit(int status)
{
	for (;;)
		syscall5(SYS_exit_group, status, 0, 0, 0, 0);
}

static u64 tag(const volatile void *p, u64 t)
{
	return ((u64)p & ((1UL << 57) - 1)) | (t << 57); /* tag in bits 63..57 */
}

static volatile u64 cell[4];
static const char tagged_text[] = "tagptr: write(2) took a tagged buffer\n";

int main(void)
{
	long ret = syscall5(SYS_prctl, PR_SET_TAGGED_ADDR_CTRL,
			    PR_TAGGED_ADDR_ENABLE | (7UL << PR_PMLEN_SHIFT), 0, 0, 0);
	if (ret < 0) {
		put("tagptr: prctl(PR_SET_TAGGED_ADDR_CTRL, PMLEN 7) failed: errno ");
		put_num(-ret);
		put(" (no pointer masking for user space)\n");
		return 2;
	}
	long ctrl = syscall5(SYS_prctl, PR_GET_TAGGED_ADDR_CTRL, 0, 0, 0, 0);
	long pmlen = (ctrl & PR_PMLEN_MASK) >> PR_PMLEN_SHIFT;
	put("tagptr: tagged address ABI on, PMLEN ");
	put_num(pmlen);
	put("\n");
	if (ctrl < 0 || !(ctrl & PR_TAGGED_ADDR_ENABLE) || pmlen < 7) {
		put("tagptr: PR_GET_TAGGED_ADDR_CTRL disagrees\n");
		return 1;
	}
	for (u64 t = 1; t < 128; t += 21) {
		volatile u64 *w = (volatile u64 *)tag(&cell[t & 3], t);
		volatile u64 *r = (volatile u64 *)tag(&cell[t & 3], 127 - t);
		*w = 0x5eed0000 + t;
		if (*r != 0x5eed0000 + t || cell[t & 3] != 0x5eed0000 + t) {
			put("tagptr: a load through a tagged pointer missed the store\n");
			return 1;
		}
	}
	put("tagptr: stores and loads through tagged pointers work\n");
	ret = syscall5(SYS_write, 1, (long)tag(tagged_text, 0x55), slen(tagged_text), 0, 0);
	if (ret != (long)slen(tagged_text)) {
		put("tagptr: write(2) with a tagged buffer failed: ");
		put_num(ret);
		put("\n");
		return 1;
	}
	put("tagptr: ok\n");
	return 0;
}

__attribute__((noreturn, used)) void start_c(void)
{
	quit(main());
}

__asm__(".globl _start\n"
	"_start:\n"
	"  .option push\n"
	"  .option norelax\n"
	"  lla gp, __global_pointer$\n"
	"  .option pop\n"
	"  andi sp, sp, -16\n"
	"  call start_c\n");
