/* qsort: memory-heavy benchmark.
 * REPS times: fills COUNT 64-bit numbers from an LCG, sorts them with quicksort
 * (median-of-three, insertion sort below 16 elements), then verifies that the
 * array is sorted, that the wrapping sum is unchanged, and that the
 * position-weighted checksum sum(i * a[i]) matches the host-computed value.
 * Default build (COUNT=100000, REPS=2): about 30 million retired instructions
 * (measured with qemu-system-riscv64 -M spike -icount shift=0, reading minstret). */
#include "rt.h"

#ifndef COUNT
#define COUNT 100000
#endif
#ifndef REPS
#define REPS 2
#endif

#if COUNT == 100000
#define WEIGHTED 0xbaf3e44a27d28362UL
#elif COUNT == 10000
#define WEIGHTED 0x491ae8d8fb7281a8UL
#else
#error "no expected checksum for this COUNT"
#endif

static u64 a[COUNT];

static void insertion(u64 *v, long n)
{
    for (long i = 1; i < n; i++) {
        u64 x = v[i];
        long j = i - 1;
        while (j >= 0 && v[j] > x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
}

static void swap(u64 *x, u64 *y)
{
    u64 t = *x;
    *x = *y;
    *y = t;
}

static void quicksort(u64 *v, long n)
{
    while (n > 16) {
        long m = n / 2;
        if (v[m] < v[0])
            swap(&v[m], &v[0]);
        if (v[n - 1] < v[0])
            swap(&v[n - 1], &v[0]);
        if (v[n - 1] < v[m])
            swap(&v[n - 1], &v[m]);
        u64 pivot = v[m];
        long i = 0, j = n - 1;
        for (;;) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i >= j)
                break;
            swap(&v[i], &v[j]);
            i++;
            j--;
        }
        /* Recurse into the smaller half, loop on the larger one. */
        long left = j + 1;
        if (left < n - left) {
            quicksort(v, left);
            v += left;
            n -= left;
        } else {
            quicksort(v + left, n - left);
            n = left;
        }
    }
    insertion(v, n);
}

static int run_once(void)
{
    u64 x = 12345, sum = 0;
    for (long i = 0; i < COUNT; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        a[i] = x ^ (x >> 29);
        sum += a[i];
    }
    quicksort(a, COUNT);
    u64 sum2 = 0, weighted = 0;
    for (long i = 0; i < COUNT; i++) {
        if (i && a[i - 1] > a[i]) {
            rt_printf("qsort: FAIL not sorted at %ld\n", i);
            return 1;
        }
        sum2 += a[i];
        weighted += (u64)i * a[i];
    }
    if (sum2 != sum || weighted != WEIGHTED) {
        rt_printf("qsort: FAIL checksum sum %lx/%lx weighted %lx expected %lx\n", sum2, sum,
                  weighted, WEIGHTED);
        return 2;
    }
    return 0;
}

int main(void)
{
    u64 i0 = csr_read(minstret);
    for (int r = 0; r < REPS; r++) {
        int rc = run_once();
        if (rc)
            return rc;
    }
    u64 n = csr_read(minstret) - i0;
    rt_printf("qsort: %d x %d numbers ok, checksum %lx, %lu instructions\n", REPS, COUNT,
              WEIGHTED, n);
    return 0;
}
