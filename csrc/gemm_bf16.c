/* bf16 GEMM with fp32 accumulation:
 *
 *     C (M, N) = [C +] A (M, K) . B (K, N)      A(i, k) = a[i*sam + k*sak], B(k, j) = b[k*sbk + j*sbn]
 *
 * A and B are bf16 bits with any strides, so the three products of training are one routine:
 *     Y  = X . W^T   A = X (sam = K, sak = 1),       B = W^T (sbk = 1, sbn = K)
 *     dX = dY . W    A = dY,                          B = W (sbk = C, sbn = 1)
 *     dW = dY^T . X  A = dY^T (sam = 1, sak = Nout),  B = X
 * C is float32, row-major with row stride ldc.
 *
 * Written once: the blocking (KC x NC panels of B, MC x KC blocks of A, as in
 * BLIS/GotoBLAS), the packing (into each micro-kernel's layout, zero-padded at
 * the edges), the OpenMP threading (B's panel packed by all threads, then the
 * (MC block, NR column chunk) tasks shared out). Per instruction set, only a
 * micro-kernel and its packed layout:
 *     amx          tdpbf16ps on 2 x 2 tiles of 16 x 16 fp32 (32 x 32), k in steps of 32
 *     avx512bf16   vdpbf16ps on bf16 pairs (8 x 32), k in steps of 2
 *     avx512       bf16 widened to fp32 at packing, FMA (8 x 32)
 *     avx2         bf16 widened to fp32 at packing, FMA (6 x 16)
 *     neon         bf16 widened to fp32 at packing, FMA (8 x 8)
 *     scalar       bf16 widened to fp32 at packing (4 x 8)
 * The path is chosen at run time from what the CPU and the OS allow (CPUID, XCR0
 * and, for AMX, the kernel's permission for tile data), never from the build
 * flags: every x86 micro-kernel is compiled with its own target attribute.
 */
#define _GNU_SOURCE 1  /* syscall() */
#include "codette.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__)  /* GCC's AMX intrinsics exist for x86-64 only */
#define HAVE_X86_GEMM 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#define HAVE_NEON_GEMM 1
#include <arm_neon.h>
#endif

/* k per packed block (a multiple of every path's k step). AMX has its own blocking
 * (-DGEMM_AMX_KC, _NC, _MC to tune it): at KC 512 and panels of 512 columns of B (one panel
 * when N <= 1024), its tile loads wait less on L2 and L3 than at the others' 256 and 2048
 * (measured on Emerald Rapids over KC 256-1024, MC 128-512, NC 512-2048: mini's products
 * 1.0-1.5x faster, the LM head the most). */
#ifndef GEMM_KC
#define GEMM_KC 256
#endif
#ifndef GEMM_AMX_KC
#define GEMM_AMX_KC 512
#endif
#ifndef GEMM_AMX_NC
#define GEMM_AMX_NC 512
#endif
#ifndef GEMM_AMX_MC
#define GEMM_AMX_MC 128
#endif
enum { KC = GEMM_KC, AMX_KC = GEMM_AMX_KC, AMX_NC = GEMM_AMX_NC, AMX_MC = GEMM_AMX_MC };
_Static_assert(GEMM_KC % 32 == 0 && GEMM_AMX_KC % 32 == 0, "KC must be a multiple of every path's k step (32 for AMX)");
enum { NC = 2048 };         /* columns of B per packed panel */
enum { MAX_TILE = 32 * 32 };

typedef void (*micro_kernel)(int64_t kc, const void *pa, const void *pb, float *c, int64_t ldc,
                             int accumulate);

typedef struct {
    const char *name;
    int mr, nr;     /* micro-tile rows and columns */
    int kstep;      /* packed k is padded to a multiple of this: 1, 2 (pairs) or 32 (AMX) */
    int layout;     /* packed layout: WIDEN (fp32), PAIRS (bf16 pairs), AMX (tiles) */
    int mc;         /* rows of A per block (a multiple of mr) */
    int kc;         /* k per packed block */
    int nc;         /* columns of B per packed panel (a multiple of nr) */
    micro_kernel kernel;
    int avx2_pack;  /* interior WIDEN and PAIRS panels packed with AVX2 (paths that imply AVX2) */
} gemm_path;

enum { WIDEN = 0, PAIRS = 1, TILES = 2 };

static inline float bf16f(uint16_t h) {
    union { uint32_t u; float f; } x = {(uint32_t)h << 16};
    return x.f;
}

/* ---- micro-kernels: c[r*ldc + j] = (accumulate ? c : 0) + sum_k pa(r, k) pb(k, j) ---- */

static void kernel_scalar(int64_t kc, const void *pa_, const void *pb_, float *c, int64_t ldc,
                          int accumulate) {
    enum { MR = 4, NR = 8 };
    const float *pa = pa_, *pb = pb_;
    float acc[MR][NR] = {{0}};
    for (int64_t k = 0; k < kc; k++)
        for (int r = 0; r < MR; r++)
            for (int j = 0; j < NR; j++) acc[r][j] += pa[k * MR + r] * pb[k * NR + j];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) c[r * ldc + j] = (accumulate ? c[r * ldc + j] : 0.0f) + acc[r][j];
}

#ifdef HAVE_X86_GEMM
__attribute__((target("avx2,fma")))
static void kernel_avx2(int64_t kc, const void *pa_, const void *pb_, float *c, int64_t ldc,
                        int accumulate) {
    enum { MR = 6 };
    const float *pa = pa_, *pb = pb_;  /* pa (kc, 6), pb (kc, 16) */
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int r = 0; r < MR; r++) {  /* the C tile is needed at the end: fetch it while computing */
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + r * ldc + 15), _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(pb + 16 * k), b1 = _mm256_loadu_ps(pb + 16 * k + 8);
        const float *ak = pa + MR * k;
        __m256 a;
        a = _mm256_broadcast_ss(ak + 0); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(ak + 1); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(ak + 2); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(ak + 3); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(ak + 4); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(ak + 5); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    __m256 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int r = 0; r < MR; r++) {
        float *cr = c + r * ldc;
        __m256 x0 = rows[r][0], x1 = rows[r][1];
        if (accumulate) {
            x0 = _mm256_add_ps(x0, _mm256_loadu_ps(cr));
            x1 = _mm256_add_ps(x1, _mm256_loadu_ps(cr + 8));
        }
        _mm256_storeu_ps(cr, x0);
        _mm256_storeu_ps(cr + 8, x1);
    }
}

/* The C tile's 8 rows x 128 bytes, fetched for writing while the kernel computes (a C tile
 * is written once per k block: without this its stores wait for the lines to arrive) */
static inline void prefetch_tile8x32(const float *c, int64_t ldc) {
    for (int r = 0; r < 8; r++) {
        __builtin_prefetch(c + r * ldc, 1, 3);
        __builtin_prefetch(c + r * ldc + 16, 1, 3);
    }
}

/* The 8 x 32 tile of the AVX-512 kernels: c[r*ldc + j] = (accumulate ? c : 0) + acc[r][j/16][j%16] */
__attribute__((target("avx512f")))
static inline void store_rows512(float *c, int64_t ldc, __m512 acc[8][2], int accumulate) {
    for (int r = 0; r < 8; r++) {
        float *cr = c + r * ldc;
        __m512 x0 = acc[r][0], x1 = acc[r][1];
        if (accumulate) {
            x0 = _mm512_add_ps(x0, _mm512_loadu_ps(cr));
            x1 = _mm512_add_ps(x1, _mm512_loadu_ps(cr + 16));
        }
        _mm512_storeu_ps(cr, x0);
        _mm512_storeu_ps(cr + 16, x1);
    }
}

__attribute__((target("avx512f")))
static void kernel_avx512(int64_t kc, const void *pa_, const void *pb_, float *c, int64_t ldc,
                          int accumulate) {
    enum { MR = 8 };
    const float *pa = pa_, *pb = pb_;  /* pa (kc, 8), pb (kc, 32) */
    __m512 acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    prefetch_tile8x32(c, ldc);
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(pb + 32 * k), b1 = _mm512_loadu_ps(pb + 32 * k + 16);
        for (int r = 0; r < MR; r++) {
            __m512 a = _mm512_set1_ps(pa[MR * k + r]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    store_rows512(c, ldc, acc, accumulate);
}

__attribute__((target("avx512f,avx512bf16")))
static void kernel_avx512bf16(int64_t kc, const void *pa_, const void *pb_, float *c, int64_t ldc,
                              int accumulate) {
    enum { MR = 8 };
    /* pa (kc/2, 8) and pb (kc/2, 32): 32-bit words, each the bf16 pair (k = 2p, 2p + 1) */
    const uint32_t *pa = pa_, *pb = pb_;
    __m512 acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    prefetch_tile8x32(c, ldc);
    for (int64_t p = 0; p < kc / 2; p++) {
        _mm_prefetch((const char *)(pa + MR * p + 64), _MM_HINT_T0);
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(pb + 32 * p);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(pb + 32 * p + 16);
        for (int r = 0; r < MR; r++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)pa[MR * p + r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
        }
    }
    store_rows512(c, ldc, acc, accumulate);
}

/* AMX: the 64-byte tile configuration (palette 1): tiles 0-3 C (16 rows x 64 bytes fp32),
 * 4-5 A (16 rows x 32 bf16), 6-7 B (16 pair-rows x 16 columns x 2 bf16). */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;
_Static_assert(sizeof(amx_config) == 64, "the tile configuration is 64 bytes");

/* A constant in memory, not a local filled in before the load: GCC 12 does not model ldtilecfg
 * as reading its operand and dropped the stores to a local configuration (seen at -O2 with
 * -march=x86-64), which made ldtilecfg fault on an all-zero tile shape. */
static const amx_config AMX_CONFIG = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

__attribute__((target("amx-tile")))
static void amx_configure(void) { _tile_loadconfig(&AMX_CONFIG); }

__attribute__((target("amx-tile")))
static void amx_release(void) { _tile_release(); }

/* pa: per k block of 32, 32 rows x 32 bf16 (64 bytes a row); pb: per k block, 16 pair-rows
 * x 32 columns x 2 bf16 (128 bytes a row). C: 32 x 32 fp32 at c (row stride ldc). */
/* Called only through gemm_path.kernel: GCC's _tile_loadd declares no memory operand, so the
 * stores that filled pa, pb and the scratch tile must be complete before the call. */
__attribute__((target("amx-tile,amx-bf16"), noinline))
static void kernel_amx(int64_t kc, const void *pa_, const void *pb_, float *c, int64_t ldc,
                       int accumulate) {
    const char *pa = pa_, *pb = pb_;
    const int64_t ldcb = ldc * (int64_t)sizeof(float);
    if (accumulate) {
        _tile_loadd(0, c, ldcb);
        _tile_loadd(1, c + 16, ldcb);
        _tile_loadd(2, c + 16 * ldc, ldcb);
        _tile_loadd(3, c + 16 * ldc + 16, ldcb);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int64_t kb = 0; kb < kc / 32; kb++) {
        const char *a = pa + kb * 2048, *b = pb + kb * 2048;
        _tile_loadd(4, a, 64);
        _tile_loadd(5, a + 1024, 64);
        _tile_loadd(6, b, 128);
        _tile_loadd(7, b + 64, 128);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, ldcb);
    _tile_stored(1, c + 16, ldcb);
    _tile_stored(2, c + 16 * ldc, ldcb);
    _tile_stored(3, c + 16 * ldc + 16, ldcb);
}
#endif /* HAVE_X86_GEMM */

#ifdef HAVE_NEON_GEMM
static void kernel_neon(int64_t kc, const void *pa_, const void *pb_, float *c, int64_t ldc,
                        int accumulate) {
    enum { MR = 8 };
    const float *pa = pa_, *pb = pb_;  /* pa (kc, 8), pb (kc, 8) */
    float32x4_t acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = vdupq_n_f32(0.0f);
    for (int64_t k = 0; k < kc; k++) {
        float32x4_t b0 = vld1q_f32(pb + 8 * k), b1 = vld1q_f32(pb + 8 * k + 4);
        float32x4_t a0 = vld1q_f32(pa + MR * k), a1 = vld1q_f32(pa + MR * k + 4);
        acc[0][0] = vfmaq_laneq_f32(acc[0][0], b0, a0, 0); acc[0][1] = vfmaq_laneq_f32(acc[0][1], b1, a0, 0);
        acc[1][0] = vfmaq_laneq_f32(acc[1][0], b0, a0, 1); acc[1][1] = vfmaq_laneq_f32(acc[1][1], b1, a0, 1);
        acc[2][0] = vfmaq_laneq_f32(acc[2][0], b0, a0, 2); acc[2][1] = vfmaq_laneq_f32(acc[2][1], b1, a0, 2);
        acc[3][0] = vfmaq_laneq_f32(acc[3][0], b0, a0, 3); acc[3][1] = vfmaq_laneq_f32(acc[3][1], b1, a0, 3);
        acc[4][0] = vfmaq_laneq_f32(acc[4][0], b0, a1, 0); acc[4][1] = vfmaq_laneq_f32(acc[4][1], b1, a1, 0);
        acc[5][0] = vfmaq_laneq_f32(acc[5][0], b0, a1, 1); acc[5][1] = vfmaq_laneq_f32(acc[5][1], b1, a1, 1);
        acc[6][0] = vfmaq_laneq_f32(acc[6][0], b0, a1, 2); acc[6][1] = vfmaq_laneq_f32(acc[6][1], b1, a1, 2);
        acc[7][0] = vfmaq_laneq_f32(acc[7][0], b0, a1, 3); acc[7][1] = vfmaq_laneq_f32(acc[7][1], b1, a1, 3);
    }
    for (int r = 0; r < MR; r++) {
        float *cr = c + r * ldc;
        float32x4_t x0 = acc[r][0], x1 = acc[r][1];
        if (accumulate) {
            x0 = vaddq_f32(x0, vld1q_f32(cr));
            x1 = vaddq_f32(x1, vld1q_f32(cr + 4));
        }
        vst1q_f32(cr, x0);
        vst1q_f32(cr + 4, x1);
    }
}
#endif

static const gemm_path PATHS[GEMM_N_PATHS] = {
    [GEMM_SCALAR] = {"scalar", 4, 8, 1, WIDEN, 64, KC, NC, kernel_scalar},
#ifdef HAVE_X86_GEMM
    [GEMM_AVX2] = {"avx2", 6, 16, 1, WIDEN, 96, KC, NC, kernel_avx2, 1},
    [GEMM_AVX512] = {"avx512", 8, 32, 1, WIDEN, 96, KC, NC, kernel_avx512, 1},
    [GEMM_AVX512BF16] = {"avx512bf16", 8, 32, 2, PAIRS, 128, KC, NC, kernel_avx512bf16, 1},
    [GEMM_AMX] = {"amx", 32, 32, 32, TILES, AMX_MC, AMX_KC, AMX_NC, kernel_amx},
#else
    [GEMM_AVX2] = {"avx2", 0, 0, 0, 0, 0, 0, 0, NULL},
    [GEMM_AVX512] = {"avx512", 0, 0, 0, 0, 0, 0, 0, NULL},
    [GEMM_AVX512BF16] = {"avx512bf16", 0, 0, 0, 0, 0, 0, 0, NULL},
    [GEMM_AMX] = {"amx", 0, 0, 0, 0, 0, 0, 0, NULL},
#endif
#ifdef HAVE_NEON_GEMM
    [GEMM_NEON] = {"neon", 8, 8, 1, WIDEN, 96, KC, NC, kernel_neon},
#else
    [GEMM_NEON] = {"neon", 0, 0, 0, 0, 0, 0, 0, NULL},
#endif
};

/* ---- what the CPU and the OS allow ---- */

static int g_detected = 0;
static uint32_t g_available = 0;   /* bit p: path p can run here */
static char g_reasons[GEMM_N_PATHS][96];

#ifdef HAVE_X86_GEMM
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Ask Linux for permission to use AMX tile data (off until a process asks); 1 if granted. */
static int amx_permission(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    enum { ARCH_GET_XCOMP_PERM = 0x1022, ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    uint64_t mask = 0;
    if (syscall(SYS_arch_prctl, (long)ARCH_REQ_XCOMP_PERM, (long)XFEATURE_XTILEDATA) != 0) return 0;
    if (syscall(SYS_arch_prctl, (long)ARCH_GET_XCOMP_PERM, &mask) != 0) return 0;
    return (mask >> XFEATURE_XTILEDATA) & 1;
#else
    return 0;
#endif
}
#endif

static void note(int p, const char *why) {
    strncpy(g_reasons[p], why, sizeof g_reasons[p] - 1);
}

static void detect_once(void);
static void detect(void) {
    if (__atomic_load_n(&g_detected, __ATOMIC_ACQUIRE)) return;
#pragma omp critical(gemm_bf16_detect)
    if (!g_detected) detect_once();
}

static void detect_once(void) {
    uint32_t av = 1u << GEMM_SCALAR;
    for (int p = 1; p < GEMM_N_PATHS; p++) note(p, "not built for this architecture");
#ifdef HAVE_X86_GEMM
    uint32_t a, b, c, d;
    int osxsave = 0, avx = 0, fma = 0, avx2 = 0, avx512f = 0, avx512bf16 = 0, amx_tile = 0, amx_bf16 = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        osxsave = (c >> 27) & 1;
        avx = (c >> 28) & 1;
        fma = (c >> 12) & 1;
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        avx2 = (b >> 5) & 1;
        avx512f = (b >> 16) & 1;
        amx_bf16 = (d >> 22) & 1;
        amx_tile = (d >> 24) & 1;
        if (a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) avx512bf16 = (a >> 5) & 1;
    }
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    int os_avx = (xcr0 & 0x6) == 0x6;                   /* SSE and AVX state */
    int os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;    /* opmask, ZMM0-15 upper, ZMM16-31 */
    int os_amx = (xcr0 & 0x60000) == 0x60000;           /* tile config and tile data */
    if (!(avx2 && fma && avx)) note(GEMM_AVX2, "the CPU has no AVX2+FMA");
    else if (!os_avx) note(GEMM_AVX2, "the OS has not enabled the AVX state (XCR0)");
    else av |= 1u << GEMM_AVX2;
    if (!(avx512f && avx2 && fma)) note(GEMM_AVX512, "the CPU has no AVX-512F (with AVX2+FMA)");
    else if (!os_avx512) note(GEMM_AVX512, "the OS has not enabled the AVX-512 state (XCR0)");
    else av |= 1u << GEMM_AVX512;
    if (!(avx512f && avx512bf16 && avx2 && fma)) note(GEMM_AVX512BF16, "the CPU has no AVX512-BF16");
    else if (!os_avx512) note(GEMM_AVX512BF16, "the OS has not enabled the AVX-512 state (XCR0)");
    else av |= 1u << GEMM_AVX512BF16;
    if (!(amx_tile && amx_bf16)) note(GEMM_AMX, "the CPU has no AMX-BF16");
    else if (!os_amx) note(GEMM_AMX, "the OS has not enabled the AMX tile state (XCR0)");
    else if (!amx_permission()) note(GEMM_AMX, "the OS refused the AMX tile-data permission (arch_prctl)");
    else av |= 1u << GEMM_AMX;
#endif
#ifdef HAVE_NEON_GEMM
    av |= 1u << GEMM_NEON;
#endif
    for (int p = 0; p < GEMM_N_PATHS; p++)
        if (av & (1u << p)) g_reasons[p][0] = 0;
    g_available = av;
    __atomic_store_n(&g_detected, 1, __ATOMIC_RELEASE);
}

uint32_t gemm_bf16_available(void) {
    detect();
    return g_available;
}

const char *gemm_bf16_path_name(int path) {
    return (path >= 0 && path < GEMM_N_PATHS) ? PATHS[path].name : "?";
}

const char *gemm_bf16_unavailable_reason(int path) {
    detect();
    return (path >= 0 && path < GEMM_N_PATHS) ? g_reasons[path] : "no such path";
}

int gemm_bf16_best_path(void) {
    static const int order[] = {GEMM_AMX, GEMM_AVX512BF16, GEMM_AVX512, GEMM_AVX2, GEMM_NEON};
    detect();
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (g_available & (1u << order[i])) return order[i];
    return GEMM_SCALAR;
}

/* ---- packing ---- */

static inline uint16_t at(const uint16_t *x, int64_t s0, int64_t s1, int64_t i, int64_t k, int64_t n0,
                          int64_t n1) {
    return (i < n0 && k < n1) ? x[i * s0 + k * s1] : 0;
}

#ifdef HAVE_X86_GEMM
/* 8 bf16 at p -> 8 floats */
__attribute__((target("avx2,fma")))
static inline __m256 widen8(const uint16_t *p) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* The 8 x 8 transpose of 32-bit lanes: o[t][i] = r[i][t] */
__attribute__((target("avx2,fma")))
static inline void transpose8x8(const __m256 r[8], __m256 o[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
    o[0] = _mm256_permute2f128_ps(s0, s4, 0x20); o[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    o[2] = _mm256_permute2f128_ps(s2, s6, 0x20); o[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    o[4] = _mm256_permute2f128_ps(s0, s4, 0x31); o[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    o[6] = _mm256_permute2f128_ps(s2, s6, 0x31); o[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* 16 bf16 at p -> 8 words, each the pair (p[2t], p[2t + 1]), as 8 float lanes (bits only) */
__attribute__((target("avx2,fma")))
static inline __m256 words8(const uint16_t *p) { return _mm256_loadu_ps((const float *)(const void *)p); }

/* Interior panels (kcp, w) for paths that imply AVX2: WIDEN floats or PAIRS words. si == 1:
 * each k's values are adjacent: a widening copy (WIDEN) or two k rows interleaved (PAIRS),
 * for `panels` consecutive panels of w rows at once (panel u at dst + u * kcp * w elements),
 * so each k row is read once in full. sk == 1 (one panel): each row's k values are adjacent:
 * 8 x 8 blocks of floats (WIDEN) or of words (PAIRS, a word holding two k) transposed, stored
 * under a mask when fewer than 8 rows remain. */
__attribute__((target("avx2,fma")))
static void pack_interior_avx2(void *dst, int layout, int w, int64_t panels, const uint16_t *x, int64_t si,
                               int64_t sk, int64_t i0, int64_t k0, int64_t kcp) {
    if (si == 1 && layout == WIDEN) {
        for (int64_t k = 0; k < kcp; k++) {
            const uint16_t *s = x + (k0 + k) * sk + i0;
            for (int64_t u = 0; u < panels; u++, s += w) {
                float *d = (float *)dst + u * kcp * w + k * w;
                int r = 0;
                for (; r + 8 <= w; r += 8) _mm256_storeu_ps(d + r, widen8(s + r));
                for (; r < w; r++) d[r] = bf16f(s[r]);
            }
        }
        return;
    }
    if (si == 1) {  /* PAIRS: word (p, r) = x(r, 2p) | x(r, 2p + 1) << 16 */
        for (int64_t p = 0; p < kcp / 2; p++) {
            const uint16_t *lo = x + (k0 + 2 * p) * sk + i0, *hi = lo + sk;
            for (int64_t u = 0; u < panels; u++, lo += w, hi += w) {
                uint32_t *d = (uint32_t *)dst + u * (kcp / 2) * w + p * w;
                int r = 0;
                for (; r + 8 <= w; r += 8) {
                    __m128i l = _mm_loadu_si128((const __m128i *)(lo + r)), h = _mm_loadu_si128((const __m128i *)(hi + r));
                    _mm_storeu_si128((__m128i *)(d + r), _mm_unpacklo_epi16(l, h));
                    _mm_storeu_si128((__m128i *)(d + r + 4), _mm_unpackhi_epi16(l, h));
                }
                for (; r < w; r++) d[r] = lo[r] | (uint32_t)hi[r] << 16;
            }
        }
        return;
    }
    const int per_k = layout == WIDEN ? 1 : 2;  /* k values per 32-bit lane */
    const int64_t lanes = kcp / per_k;          /* lanes per row */
    float *d = dst;
    for (int rb = 0; rb < w; rb += 8) {
        const int rows = w - rb < 8 ? w - rb : 8;
        const uint16_t *p[8];
        for (int t = 0; t < 8; t++) p[t] = x + (i0 + rb + (t < rows ? t : rows - 1)) * si + k0;
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rows), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        int64_t q = 0;
        for (; q + 8 <= lanes; q += 8) {
            __m256 r[8], o[8];
            for (int t = 0; t < 8; t++) r[t] = per_k == 1 ? widen8(p[t] + q) : words8(p[t] + 2 * q);
            transpose8x8(r, o);
            for (int t = 0; t < 8; t++) {
                if (rows == 8) _mm256_storeu_ps(d + (q + t) * w + rb, o[t]);
                else _mm256_maskstore_ps(d + (q + t) * w + rb, mask, o[t]);
            }
        }
        for (; q < lanes; q++)
            for (int t = 0; t < rows; t++) {
                if (per_k == 1) {
                    d[q * w + rb + t] = bf16f(p[t][q]);
                } else {
                    const uint32_t word = p[t][2 * q] | (uint32_t)p[t][2 * q + 1] << 16;
                    memcpy(d + q * w + rb + t, &word, 4);
                }
            }
    }
}
#endif

/* One micro-panel of `w` rows (A: rows of A; B: columns of B) over k0..k0+kcp (padded), from
 * X(i, k) = x[i*si + k*sk] with ni rows and nk k-values in all: rows or k past the edge are 0. */
static void pack_panel(void *dst, const gemm_path *P, int w, const uint16_t *x, int64_t si, int64_t sk,
                       int64_t i0, int64_t ni, int64_t k0, int64_t nk, int64_t kcp, int is_b) {
    const int interior = i0 + w <= ni && k0 + kcp <= nk;
#ifdef HAVE_X86_GEMM
    if (P->layout != TILES && interior && P->avx2_pack && (sk == 1 || si == 1)) {
        pack_interior_avx2(dst, P->layout, w, 1, x, si, sk, i0, k0, kcp);
        return;
    }
#endif
    if (P->layout == WIDEN && interior && (sk == 1 || si == 1)) {
        float *d = dst;  /* (kcp, w), no edge: plain loops the compiler vectorizes */
        if (si == 1) {
            for (int64_t k = 0; k < kcp; k++) {
                const uint16_t *s = x + (k0 + k) * sk + i0;
                for (int r = 0; r < w; r++) d[k * w + r] = bf16f(s[r]);
            }
        } else {
            for (int r = 0; r < w; r++) {
                const uint16_t *s = x + (i0 + r) * si + k0;
                for (int64_t k = 0; k < kcp; k++) d[k * w + r] = bf16f(s[k]);
            }
        }
    } else if (P->layout == WIDEN) {
        float *d = dst;  /* (kcp, w) */
        if (sk == 1 || si != 1) {
            for (int r = 0; r < w; r++)
                for (int64_t k = 0; k < kcp; k++) d[k * w + r] = bf16f(at(x, si, sk, i0 + r, k0 + k, ni, nk));
        } else {
            for (int64_t k = 0; k < kcp; k++)
                for (int r = 0; r < w; r++) d[k * w + r] = bf16f(at(x, si, sk, i0 + r, k0 + k, ni, nk));
        }
    } else if (P->layout == PAIRS) {
        uint32_t *d = dst;  /* (kcp / 2, w) words: the pair (2p, 2p + 1) */
        for (int64_t p = 0; p < kcp / 2; p++)
            for (int r = 0; r < w; r++)
                d[p * w + r] = at(x, si, sk, i0 + r, k0 + 2 * p, ni, nk)
                               | (uint32_t)at(x, si, sk, i0 + r, k0 + 2 * p + 1, ni, nk) << 16;
    } else if (interior && !is_b) {
        uint16_t *d = dst;  /* A tiles, no edge: each (row, k block) a 64-byte copy when k is adjacent */
        for (int64_t kb = 0; kb < kcp / 32; kb++)
            for (int r = 0; r < w; r++) {
                const uint16_t *s = x + (i0 + r) * si + (k0 + kb * 32) * sk;
                uint16_t *o = d + kb * 1024 + r * 32;
                if (sk == 1) memcpy(o, s, 64);
                else for (int kk = 0; kk < 32; kk++) o[kk] = s[kk * sk];
            }
    } else if (interior) {
        uint16_t *d = dst;  /* B tiles, no edge: (k 2p + h, column j) -> d[p * 64 + j * 2 + h] per k block */
        for (int64_t kb = 0; kb < kcp / 32; kb++)
            for (int p = 0; p < 16; p++) {
                const uint16_t *lo = x + i0 * si + (k0 + kb * 32 + 2 * p) * sk, *hi = lo + sk;
                uint16_t *o = d + kb * 1024 + p * 64;
                for (int j = 0; j < w; j++) {
                    o[2 * j] = lo[j * si];
                    o[2 * j + 1] = hi[j * si];
                }
            }
    } else if (!is_b) {
        uint16_t *d = dst;  /* A tiles: per k block of 32, (32 rows, 32 k) */
        for (int64_t kb = 0; kb < kcp / 32; kb++)
            for (int r = 0; r < w; r++)
                for (int kk = 0; kk < 32; kk++)
                    d[kb * 1024 + r * 32 + kk] = at(x, si, sk, i0 + r, k0 + kb * 32 + kk, ni, nk);
    } else {
        uint16_t *d = dst;  /* B tiles: per k block of 32, (16 pair-rows, 32 columns, 2) */
        for (int64_t kb = 0; kb < kcp / 32; kb++)
            for (int p = 0; p < 16; p++)
                for (int j = 0; j < w; j++)
                    for (int h = 0; h < 2; h++)
                        d[kb * 1024 + p * 64 + j * 2 + h] = at(x, si, sk, i0 + j, k0 + kb * 32 + 2 * p + h, ni, nk);
    }
}

static inline size_t packed_elem_bytes(const gemm_path *P) { return P->layout == WIDEN ? 4 : 2; }

/* ---- the driver ---- */

static int g_forced = -1;  /* set by gemm_bf16_set_path; -1: the best available */

int gemm_bf16_set_path(int path) {
    detect();
    if (path == -1) {
        g_forced = -1;
        return 0;
    }
    if (path < 0 || path >= GEMM_N_PATHS || !(g_available & (1u << path))) return -1;
    g_forced = path;
    return 0;
}

int gemm_bf16_current_path(void) { return g_forced >= 0 ? g_forced : gemm_bf16_best_path(); }

/* One task's share of one k block: rows i0..i0+mc of A packed into pa, then the C tiles of
 * column panels q0..q1 (of the packed B panel pbk, whose first column is jc) computed. */
static void run_block(const gemm_path *P, void *pa, const void *pbk, float *tile, float *c, int64_t ldc,
                      const uint16_t *a, int64_t sam, int64_t sak, int64_t M, int64_t N, int64_t K,
                      int64_t i0, int64_t mc, int64_t jc, int64_t q0, int64_t q1, int64_t pc, int64_t kcp,
                      int acc) {
    const int mr = P->mr, nr = P->nr;
    const size_t es = packed_elem_bytes(P);
    const int64_t mpanels = (mc + mr - 1) / mr;
    int64_t u = 0;
#ifdef HAVE_X86_GEMM
    if (sam == 1 && P->avx2_pack && P->layout != TILES && pc + kcp <= K) {
        u = mc / mr;  /* the block's full panels from whole rows of k */
        pack_interior_avx2(pa, P->layout, mr, u, a, sam, sak, i0, pc, kcp);
    }
#endif
    for (; u < mpanels; u++)
        pack_panel((char *)pa + (size_t)u * kcp * mr * es, P, mr, a, sam, sak, i0 + u * mr, M, pc, K, kcp, 0);
    for (int64_t q = q0; q < q1; q++) {
        const int64_t j0 = jc + q * nr, nw = N - j0 < nr ? N - j0 : nr;
        const void *bq = (const char *)pbk + (size_t)q * kcp * nr * es;
        for (u = 0; u < mpanels; u++) {
            const int64_t r0 = i0 + u * mr, mw = M - r0 < mr ? M - r0 : mr;
            const void *au = (const char *)pa + (size_t)u * kcp * mr * es;
            float *cu = c + r0 * ldc + j0;
            if (mw == mr && nw == nr) {
                P->kernel(kcp, au, bq, cu, ldc, acc);
            } else {  /* an edge tile: through a full-size scratch tile */
                for (int r = 0; r < mr; r++)
                    for (int j = 0; j < nr; j++) tile[r * nr + j] = (acc && r < mw && j < nw) ? cu[r * ldc + j] : 0.0f;
                P->kernel(kcp, au, bq, tile, nr, 1);
                for (int r = 0; r < mw; r++) memcpy(cu + r * ldc, tile + r * nr, (size_t)nw * sizeof(float));
            }
        }
    }
}

/* B's packed panels for all k blocks at once (so the tasks need no barrier between k blocks)
 * when they take at most this many bytes; else one k block at a time (a test builds with 0) */
#ifndef GEMM_WHOLE_K_BYTES
#define GEMM_WHOLE_K_BYTES (8 << 20)
#endif
enum { WHOLE_K_BYTES = GEMM_WHOLE_K_BYTES };

int gemm_bf16(float *c, int64_t ldc, const uint16_t *a, int64_t sam, int64_t sak,
              const uint16_t *b, int64_t sbk, int64_t sbn, int64_t M, int64_t N, int64_t K,
              int accumulate) {
    if (M <= 0 || N <= 0) return 0;
    const int path = gemm_bf16_current_path();
    const gemm_path *P = &PATHS[path];
    if (K <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(c + i * ldc, 0, (size_t)N * sizeof(float));
        return 0;
    }
    const int nr = P->nr;
    const size_t es = packed_elem_bytes(P);
    int64_t NCp = P->nc;
    if (P->layout == TILES && N <= 2 * NCp) NCp = (N + nr - 1) / nr * nr;  /* one panel: no second pass over A */
    const int64_t nc_max = N < NCp ? ((N + nr - 1) / nr) * nr : NCp;
    const int64_t KCp = P->kc;
    const int64_t kc_max = K < KCp ? ((K + P->kstep - 1) / P->kstep) * P->kstep : KCp;
    const int64_t kblocks = (K + KCp - 1) / KCp;
    const size_t block_bytes = ((size_t)kc_max * nc_max * es + 63) / 64 * 64;  /* one k block's B panel */
    const int whole_k = kblocks > 1 && block_bytes * (size_t)kblocks <= WHOLE_K_BYTES;
    const int64_t held = whole_k ? kblocks : 1;  /* k blocks of B packed at a time */
    void *pb = aligned_alloc(64, block_bytes * (size_t)held);
    if (!pb) return 1;
    int failed = 0;
    int nthreads = 1;
#ifdef _OPENMP
    nthreads = 2.0 * (double)M * (double)N * (double)K < 4e6 ? 1 : omp_get_max_threads();
#endif
#pragma omp parallel num_threads(nthreads)
    {
        void *pa = aligned_alloc(64, ((size_t)P->mc * kc_max * es + 63) / 64 * 64);
        float tile[MAX_TILE];
#ifdef HAVE_X86_GEMM
        if (P->layout == TILES) amx_configure();
#endif
        if (!pa) {
#pragma omp atomic write
            failed = 1;
        }
        for (int64_t jc = 0; jc < N; jc += NCp) {
            const int64_t nc = N - jc < NCp ? N - jc : NCp;
            const int64_t npanels = (nc + nr - 1) / nr;
            /* tasks: (block of mc rows, chunk of column panels) */
            const int64_t mblocks = (M + P->mc - 1) / P->mc;
            int64_t chunks = 1;
            while (mblocks * chunks < 4 * nthreads && chunks * 2 <= npanels) chunks *= 2;
            const int64_t per_chunk = (npanels + chunks - 1) / chunks;
            for (int64_t kb0 = 0; kb0 < kblocks; kb0 += held) {
                /* B's (kc, nc) panels of k blocks kb0..kb0+held: panel q of block kb at
                 * pb + kb' * block_bytes + q * kcp * nr * es */
#pragma omp for collapse(2) schedule(static)
                for (int64_t kb = kb0; kb < kb0 + held; kb++)
                    for (int64_t q = 0; q < npanels; q++) {
                        const int64_t pc = kb * KCp, kc = K - pc < KCp ? K - pc : KCp;
                        const int64_t kcp = (kc + P->kstep - 1) / P->kstep * P->kstep;
                        pack_panel((char *)pb + (size_t)(kb - kb0) * block_bytes + (size_t)q * kcp * nr * es, P, nr,
                                   b, sbn, sbk, jc + q * nr, N, pc, K, kcp, 1);
                    }
#pragma omp for schedule(dynamic, 1)
                for (int64_t t = 0; t < mblocks * chunks; t++) {
                    if (!pa) continue;
                    const int64_t ib = t / chunks, ch = t % chunks;
                    const int64_t i0 = ib * P->mc, mc = M - i0 < P->mc ? M - i0 : P->mc;
                    const int64_t q0 = ch * per_chunk, q1 = q0 + per_chunk < npanels ? q0 + per_chunk : npanels;
                    if (q0 >= q1) continue;
                    for (int64_t kb = kb0; kb < kb0 + held; kb++) {
                        const int64_t pc = kb * KCp, kc = K - pc < KCp ? K - pc : KCp;
                        const int64_t kcp = (kc + P->kstep - 1) / P->kstep * P->kstep;
                        run_block(P, pa, (const char *)pb + (size_t)(kb - kb0) * block_bytes, tile, c, ldc, a, sam,
                                  sak, M, N, K, i0, mc, jc, q0, q1, pc, kcp, accumulate || pc > 0);
                    }
                }
            }
        }
#ifdef HAVE_X86_GEMM
        if (P->layout == TILES) amx_release();
#endif
        free(pa);
    }
    free(pb);
    return failed;
}

/* float32 (n,) -> bf16 bits, round to nearest even (NaN stays NaN) */
void f32_to_bf16_rne(uint16_t *out, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) {
        union { float f; uint32_t u; } v = {x[i]};
        if ((v.u & 0x7fffffffu) > 0x7f800000u) {
            out[i] = (uint16_t)((v.u >> 16) | 0x40);
        } else {
            out[i] = (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
        }
    }
}

/* As f32_to_bf16_rne into the first half of x's own bytes: block b's bits overwrite bytes
 * of blocks before it or of itself, read into a bounce buffer first; memcpy keeps the
 * float and uint16 accesses apart (no aliasing between the two types). */
void f32_to_bf16_rne_in_place(float *x, int64_t n) {
    enum { BLOCK = 4096 };
    uint16_t bits[BLOCK];
    for (int64_t i = 0; i < n; i += BLOCK) {
        const int64_t m = n - i < BLOCK ? n - i : BLOCK;
        f32_to_bf16_rne(bits, x + i, m);
        memcpy((char *)x + 2 * i, bits, (size_t)m * 2);
    }
}
