/* crc32: integer-compute benchmark.
 * Fills DATA_KB KiB with xorshift64 output, then ITER times computes the
 * standard CRC-32 (zlib.crc32) of it twice: bit by bit (branch-free) and with a
 * 256-entry table.  Every result must equal EXPECTED (computed on the host with
 * Python's zlib.crc32 over the same bytes).
 * Default build (ITER=3, DATA_KB=128): about 31 million retired instructions
 * (measured with qemu-system-riscv64 -M spike -icount shift=0, reading minstret). */
#include "rt.h"

#ifndef ITER
#define ITER 3
#endif
#ifndef DATA_KB
#define DATA_KB 128
#endif

/* zlib.crc32 of the generated buffer, by size. */
#if DATA_KB == 128
#define EXPECTED 0x4247ba30u
#elif DATA_KB == 16
#define EXPECTED 0xbe609797u
#else
#error "no expected CRC for this DATA_KB"
#endif

#define NWORDS (DATA_KB * 1024 / 8)
static u64 data[NWORDS];
static u32 table[256];

static void fill(void)
{
    u64 x = 0x9e3779b97f4a7c15UL;
    for (int i = 0; i < NWORDS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data[i] = x;
    }
}

static u32 crc_bitwise(const u8 *p, size_t n)
{
    u32 crc = 0xffffffffu;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
    }
    return ~crc;
}

static void make_table(void)
{
    for (u32 i = 0; i < 256; i++) {
        u32 c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xedb88320u : c >> 1;
        table[i] = c;
    }
}

static u32 crc_table(const u8 *p, size_t n)
{
    u32 crc = 0xffffffffu;
    while (n--)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

int main(void)
{
    u64 i0 = csr_read(minstret);
    fill();
    make_table();
    for (int it = 0; it < ITER; it++) {
        u32 a = crc_bitwise((const u8 *)data, sizeof(data));
        u32 b = crc_table((const u8 *)data, sizeof(data));
        if (a != EXPECTED || b != EXPECTED) {
            rt_printf("crc32: FAIL iteration %d: bitwise %x table %x expected %x\n", it, a, b,
                      EXPECTED);
            return 1;
        }
    }
    u64 n = csr_read(minstret) - i0;
    rt_printf("crc32: %d x %d KiB ok, crc %x, %lu instructions\n", ITER, DATA_KB, EXPECTED, n);
    return 0;
}
