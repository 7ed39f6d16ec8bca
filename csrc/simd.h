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
 *   vf_exp(a)       exp of each lane (about 1 ulp; the one exp of every kernel)
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

#include <math.h>

/* ------------------------------------------------------------------------
 * The one vector exp, shared by every kernel (softmax, attention, GELU).
 * vf_exp(x): exp of each lane, about 1 ulp, with exp(+inf) = +inf,
 * exp(-inf) = 0, exp(NaN) = NaN, overflow to +inf and underflow through
 * subnormals to 0. exp(x) = 2^n exp(r), n = round(x / ln2), r = x - n ln2
 * (ln2 in two parts), exp(r) by the Cephes expf polynomial.
 * vf_clamp keeps NaN: max/min return their second operand when one is NaN. */
#define EXP_LO (-104.0f)  /* exp(-104) rounds to 0 */
#define EXP_HI 89.0f      /* exp(89) overflows to +inf */

static inline vf_t exp_reduced(vf_t x, vf_t n) {
    vf_t r = vf_fma(n, vf_set1(-0.693359375f), x);
    r = vf_fma(n, vf_set1(2.12194440e-4f), r);
    vf_t p = vf_set1(1.9875691500e-4f);
    p = vf_fma(p, r, vf_set1(1.3981999507e-3f));
    p = vf_fma(p, r, vf_set1(8.3334519073e-3f));
    p = vf_fma(p, r, vf_set1(4.1665795894e-2f));
    p = vf_fma(p, r, vf_set1(1.6666665459e-1f));
    p = vf_fma(p, r, vf_set1(5.0000001201e-1f));
    return vf_add(vf_fma(vf_mul(r, r), p, r), vf_set1(1.0f));
}

#if defined(__AVX512F__)
static inline vf_t vf_clamp(vf_t x, float lo, float hi) {
    return _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), x));
}
static inline vf_t vf_exp(vf_t x) {
    x = vf_clamp(x, EXP_LO, EXP_HI);
    vf_t n = _mm512_roundscale_ps(vf_mul(x, vf_set1(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_scalef_ps(exp_reduced(x, n), n);  /* p * 2^n, saturating */
}
#elif defined(__AVX2__) && defined(__FMA__)
static inline vf_t vf_clamp(vf_t x, float lo, float hi) {
    return _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), x));
}
static inline __m256 pow2i(__m256i k) {  /* 2^k for k in [-126, 127] */
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}
static inline vf_t vf_exp(vf_t x) {
    x = vf_clamp(x, EXP_LO, EXP_HI);
    vf_t n = _mm256_round_ps(vf_mul(x, vf_set1(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vf_t p = exp_reduced(x, n);
    /* n in [-150, 129]: scale in two halves so both powers are normal floats */
    __m256i k = _mm256_cvtps_epi32(n);
    __m256i k1 = _mm256_srai_epi32(k, 1);
    return vf_mul(vf_mul(p, pow2i(k1)), pow2i(_mm256_sub_epi32(k, k1)));
}
#else
/* other ISAs: libm expf lane by lane (correct, not fast) */
static inline vf_t vf_clamp(vf_t x, float lo, float hi) {
    float t[VF];
    vf_store(t, x);
    for (int i = 0; i < VF; i++) t[i] = t[i] < lo ? lo : (t[i] > hi ? hi : t[i]);
    return vf_load(t);
}
static inline vf_t vf_exp(vf_t x) {
    float t[VF];
    vf_store(t, x);
    for (int i = 0; i < VF; i++) t[i] = expf(t[i]);
    return vf_load(t);
}
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#endif
