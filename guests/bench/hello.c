/* hello: prints a greeting on the HTIF console and passes. */
#include "rt.h"

int main(void)
{
    u64 misa = csr_read(misa);
    char ext[27];
    int n = 0;
    for (int i = 0; i < 26; i++)
        if (misa & (1UL << i))
            ext[n++] = (char)('a' + i);
    ext[n] = 0;
    rt_puts("Hello from rvkvm guest!\n");
    rt_printf("hart %lu, misa rv%d%s\n", csr_read(mhartid), 32 << ((misa >> 62) - 1), ext);
    rt_puts("Goodbye.\n");
    return 0;
}
