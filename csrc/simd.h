/* A small SIMD layer: a handful of float vector operations behind one set of
 * names, for AVX-512, AVX2+FMA, NEON and plain scalar code. Kernels are
 * written once against it: a main loop over full vectors of VF floats and a
 * scalar tail for the rest.
 *
 *   vf_t            a vector of VF floats
 *   vf_load(p)      unaligned load of VF floats
 *   vf_store(p, x)  unaligned store
 *   vf_set1(s)      broadcast
 *   vf_add/sub/mul/div(a, b)
 *   vf_fma(a, b, c) a*b + c
 *   vf_sqrt(a), vf_max(a, b)
 *   vf_hsum(a)      horizontal sum (float)
 *   vf_hmax(a)      horizontal max
 */
#ifndef CODETTE_SIMD_H
#define CODETTE_SIMD_H

#if defined(__AVX512F__)
#include <immintrin.h>
#define SIMD_NAME "avx512"
#define VF 16
typedef __m512 vf_t;
#define vf_load(p) _mm512_loadu_ps(p)
#define vf_store(p, x) _mm512_storeu_ps((p), (x))
#define vf_set1(s) _mm512_set1_ps(s)
#define vf_add(a, b) _mm512_add_ps((a), (b))
#define vf_sub(a, b) _mm512_sub_ps((a), (b))
#define vf_mul(a, b) _mm512_mul_ps((a), (b))
#define vf_div(a, b) _mm512_div_ps((a), (b))
#define vf_fma(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define vf_sqrt(a) _mm512_sqrt_ps(a)
#define vf_max(a, b) _mm512_max_ps((a), (b))
#define vf_hsum(a) _mm512_reduce_add_ps(a)
#define vf_hmax(a) _mm512_reduce_max_ps(a)

#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SIMD_NAME "avx2"
#define VF 8
typedef __m256 vf_t;
#define vf_load(p) _mm256_loadu_ps(p)
#define vf_store(p, x) _mm256_storeu_ps((p), (x))
#define vf_set1(s) _mm256_set1_ps(s)
#define vf_add(a, b) _mm256_add_ps((a), (b))
#define vf_sub(a, b) _mm256_sub_ps((a), (b))
#define vf_mul(a, b) _mm256_mul_ps((a), (b))
#define vf_div(a, b) _mm256_div_ps((a), (b))
#define vf_fma(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define vf_sqrt(a) _mm256_sqrt_ps(a)
#define vf_max(a, b) _mm256_max_ps((a), (b))
static inline float vf_hsum(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float vf_hmax(__m256 a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#elif defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>
#define SIMD_NAME "neon"
#define VF 4
typedef float32x4_t vf_t;
#define vf_load(p) vld1q_f32(p)
#define vf_store(p, x) vst1q_f32((p), (x))
#define vf_set1(s) vdupq_n_f32(s)
#define vf_add(a, b) vaddq_f32((a), (b))
#define vf_sub(a, b) vsubq_f32((a), (b))
#define vf_mul(a, b) vmulq_f32((a), (b))
#define vf_div(a, b) vdivq_f32((a), (b))
#define vf_fma(a, b, c) vfmaq_f32((c), (a), (b))
#define vf_sqrt(a) vsqrtq_f32(a)
#define vf_max(a, b) vmaxq_f32((a), (b))
#define vf_hsum(a) vaddvq_f32(a)
#define vf_hmax(a) vmaxvq_f32(a)

#else
#include <math.h>
#define SIMD_NAME "scalar"
#define VF 1
typedef float vf_t;
#define vf_load(p) (*(p))
#define vf_store(p, x) (*(p) = (x))
#define vf_set1(s) (s)
#define vf_add(a, b) ((a) + (b))
#define vf_sub(a, b) ((a) - (b))
#define vf_mul(a, b) ((a) * (b))
#define vf_div(a, b) ((a) / (b))
#define vf_fma(a, b, c) ((a) * (b) + (c))
#define vf_sqrt(a) sqrtf(a)
#define vf_max(a, b) ((a) > (b) ? (a) : (b))
#define vf_hsum(a) (a)
#define vf_hmax(a) (a)
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#endif
