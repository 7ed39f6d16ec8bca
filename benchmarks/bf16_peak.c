/* The machine's bf16 arithmetic peak, for the GEMM benchmark's "share of peak": each thread
 * runs the path's multiply-add instruction on registers only (no loads, no stores), so the
 * rate is what the cores' arithmetic units give and no GEMM can beat.
 *   amx         tdpbf16ps into 4 independent C tiles (16 x 16 x 32: 16,384 flops each)
 *   avx512bf16  vdpbf16ps into 12 independent zmm accumulators (64 flops each)
 * Arguments: the paths to time, which must be able to run here (test_bench_gemm.py passes those
 * codette_np.gemm found runnable). Prints one JSON line: path -> GFLOP/s with all OpenMP threads
 * (best of 5). Built and run by test_bench_gemm.py; not part of the package. */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;
static const tile_config CONFIG = {.palette = 1, .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
                                   .rows = {16, 16, 16, 16, 16, 16, 16, 16}};
static uint16_t ZEROS[16 * 32] __attribute__((aligned(64)));

__attribute__((target("amx-tile,amx-bf16"), noinline))
static void amx_loop(long n) {
    _tile_loadconfig(&CONFIG);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, ZEROS, 64);
    _tile_loadd(5, ZEROS, 64);
    _tile_loadd(6, ZEROS, 64);
    _tile_loadd(7, ZEROS, 64);
    for (long i = 0; i < n; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_release();
}

static volatile float SINK;

__attribute__((target("avx512f,avx512bf16"), noinline))
static void dpbf16_loop(long n) {
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0,
           c9 = c0, c10 = c0, c11 = c0;
    const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3c003c00);  /* bf16 pairs of 2^-7 */
    for (long i = 0; i < n; i++) {
        c0 = _mm512_dpbf16_ps(c0, a, a), c1 = _mm512_dpbf16_ps(c1, a, a), c2 = _mm512_dpbf16_ps(c2, a, a);
        c3 = _mm512_dpbf16_ps(c3, a, a), c4 = _mm512_dpbf16_ps(c4, a, a), c5 = _mm512_dpbf16_ps(c5, a, a);
        c6 = _mm512_dpbf16_ps(c6, a, a), c7 = _mm512_dpbf16_ps(c7, a, a), c8 = _mm512_dpbf16_ps(c8, a, a);
        c9 = _mm512_dpbf16_ps(c9, a, a), c10 = _mm512_dpbf16_ps(c10, a, a), c11 = _mm512_dpbf16_ps(c11, a, a);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    SINK = _mm512_reduce_add_ps(s);
}

/* GFLOP/s of loop(n) on every thread at once, best of 5 */
static double rate(void (*loop)(long), long n, double flops_per_iter) {
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t = omp_get_wtime();
        int threads = 1;
#pragma omp parallel
        {
            loop(n);
#pragma omp single
            threads = omp_get_num_threads();
        }
        t = omp_get_wtime() - t;
        double r = threads * n * flops_per_iter / t / 1e9;
        if (r > best) best = r;
    }
    return best;
}

int main(int argc, char **argv) {
    printf("{");
    for (int i = 1; i < argc; i++) {
        double r = 0;
        if (!strcmp(argv[i], "amx")) {  /* tile data: the permission this process must ask for */
            if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) != 0) return 1;
            r = rate(amx_loop, 1000000, 4 * 16384.0);
        } else if (!strcmp(argv[i], "avx512bf16")) {
            r = rate(dpbf16_loop, 10000000, 12 * 64.0);
        } else {
            return 2;
        }
        printf("%s\"%s\": %.1f", i > 1 ? ", " : "", argv[i], r);
    }
    printf("}\n");
    return 0;
}
