/* nqueens: branch-heavy recursion benchmark.
 * Counts the solutions of the N-queens problem with array-based backtracking
 * (column and both diagonal occupancy tables), REPS times for N=8 (92
 * solutions) and once for N=9 (352) and N=10 (724) per repetition.
 * Default build (REPS=4): about 28 million retired instructions
 * (measured with qemu-system-riscv64 -M spike -icount shift=0, reading minstret). */
#include "rt.h"

#ifndef REPS
#define REPS 4
#endif

static u8 col[16], diag1[32], diag2[32];

static int solve(int row, int n)
{
    if (row == n)
        return 1;
    int count = 0;
    for (int c = 0; c < n; c++) {
        if (col[c] || diag1[row + c] || diag2[row - c + n - 1])
            continue;
        col[c] = diag1[row + c] = diag2[row - c + n - 1] = 1;
        count += solve(row + 1, n);
        col[c] = diag1[row + c] = diag2[row - c + n - 1] = 0;
    }
    return count;
}

static const int expected[11] = {1, 1, 0, 0, 2, 10, 4, 40, 92, 352, 724};

int main(void)
{
    u64 i0 = csr_read(minstret);
    for (int r = 0; r < REPS; r++) {
        for (int n = 8; n <= 10; n++) {
            int got = solve(0, n);
            if (got != expected[n]) {
                rt_printf("nqueens: FAIL n=%d: %d solutions, expected %d\n", n, got, expected[n]);
                return 1;
            }
        }
    }
    u64 n = csr_read(minstret) - i0;
    rt_printf("nqueens: %d x (8,9,10) ok, %lu instructions\n", REPS, n);
    return 0;
}
