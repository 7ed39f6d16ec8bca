/* The fused AdamW update and the global gradient norm: one pass each over
 * the flat buffers. Oracle: adamw_step / grad_norm_sq in
 * codette_np/kernels/ref.py. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "codette.h"
#include "simd.h"

/* The per-step constants of an update: bias corrections, 1 - beta, lr * wd. */
typedef struct { float lr, beta1, beta2, one_m_b1, one_m_b2, bc1, bc2, eps, lr_wd; } adam_consts;

static adam_consts adam_setup(float lr, float beta1, float beta2, float eps, float weight_decay,
                              int decay, int64_t step) {
    adam_consts c = {lr, beta1, beta2, 1.0f - beta1, 1.0f - beta2,
                     (float)(1.0 - pow((double)beta1, (double)step)),
                     (float)(1.0 - pow((double)beta2, (double)step)),
                     eps, decay ? lr * weight_decay : 0.0f};
    return c;
}

/* the new parameter from p and the new moments mi, vi (the operation order of the reference) */
static inline float adam_param(float p, float mi, float vi, const adam_consts *c) {
    p = p - c->lr_wd * p;
    return p - c->lr * (mi / c->bc1) / (sqrtf(vi / c->bc2) + c->eps);
}

/* One tensor's update: params, m, v (n,) in place; grads (n,); decay 1 for
 * decoupled weight decay (matrices), 0 otherwise. */
void adamw_step(float *params, float *m, float *v,
                const float *grads, int decay,
                float lr, float beta1, float beta2, float eps, float weight_decay,
                int64_t step, float grad_scale, int64_t n) {
    const adam_consts c = adam_setup(lr, beta1, beta2, eps, weight_decay, decay, step);
    /* Element-wise and independent: a static partition gives the same result
     * for any thread count. Written scalar so the compiler vectorizes it with
     * the exact operation order of the reference. */
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = grads[i] * grad_scale;
        float mi = c.beta1 * m[i] + c.one_m_b1 * g;
        float vi = c.beta2 * v[i] + c.one_m_b2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        params[i] = adam_param(params[i], mi, vi, &c);
    }
}

/* ---- low-precision moments ----
 * Stored moments are rounded stochastically: the random bits of element i
 * are sr_bits(sr_key(seed, step, stream), offset + i), a pure function of the
 * run's seed, the step and the element's index in the flat buffer, so the
 * result is the same for any thread count and a resumed run repeats it bit
 * for bit. Oracle: codette_np/kernels/ref.py (sr_key, sr_bits, q8 codes). */

static inline uint64_t mix64(uint64_t z) {  /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t sr_key(uint64_t seed, int64_t step, int stream) {
    return mix64(mix64(mix64(seed) + (uint64_t)step) + (uint64_t)stream);
}

/* The element's bits from 32-bit arithmetic only (AVX2 has no 64-bit multiply): the index's
 * two halves folded into one word (a bijection of the low half for a given high half), the
 * stream's key (already mixed by sr_key) added, then lowbias32, C. Wellons' 32-bit integer
 * hash (a bijection with near-ideal avalanche). For a given element the bits are uniform
 * over the keys; elements and streams get unrelated bits. */
static inline uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    return x ^ (x >> 16);
}

static inline uint32_t sr_index_word(uint32_t lo, uint32_t hi) { return lo * 0x9E3779B9u + hi * 0x85EBCA77u; }

static inline uint32_t sr_mix(uint64_t key, uint32_t word) { return mix32(word + (uint32_t)(key >> 32)); }

static inline uint32_t sr_bits(uint64_t key, uint64_t index) {
    return sr_mix(key, sr_index_word((uint32_t)index, (uint32_t)(index >> 32)));
}

static inline float f32_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float bf16_decode(uint16_t h) { return f32_of((uint32_t)h << 16); }

/* x finite -> bf16, rounded up with probability (discarded bits) / 2^16 */
static inline uint16_t bf16_round_sr(float x, uint32_t r) {
    return (uint16_t)((bits_of(x) + (r & 0xFFFFu)) >> 16);
}

/* 8-bit codes, per block of Q8_BLOCK elements scaled by the block's absmax, each a small
 * float (exponent and mantissa bits) relative to it:
 *   m (signed):   byte = sign << 7 | mag; mag 0 is 0, else |u| = 2^((mag >> 3) - 15) * (1 + (mag & 7) / 8)
 *   v (unsigned): byte c; 0 is 0, else u = 2^((c >> 4) - 15) * (1 + (c & 15) / 16)
 * (m: 3 mantissa bits, 12.5% steps over 15 octaves; v: 4 bits, 6.25% steps over 15
 * octaves; codes above 1.0 are unused). m spans as many octaves as v: Adam divides m by
 * sqrt(v), so an m range narrower than sqrt(v)'s (7 octaves, an earlier code) rounds the
 * small moments of small-gradient weights to 0 or the smallest code, and that rounding
 * noise, divided by their small sqrt(v), moved them by whole steps (micro, lean plan,
 * validation loss against fp32 at steps 100/200/300: -0.0/+1.8/+2.2% with the earlier
 * code, -0.3/-0.1/+0.7% with this one). Magnitudes
 * under the smallest code round to it or to 0 stochastically (m), or up to it (v, so a
 * nonzero v never becomes 0). */
enum { Q8_M_EMIN = -15, Q8_V_EMIN = -15, Q8_M_MB = 3, Q8_V_MB = 4 };

/* code 1..255 -> magnitude / absmax (the exponent and mantissa fields placed with shifts) */
static inline uint32_t q8_value_bits(uint32_t code, int emin, int mb) {
    return ((code >> mb) + (uint32_t)(emin + 127)) << 23 | (code & ((1u << mb) - 1)) << (23 - mb);
}

static inline float q8_value(int code, int emin, int mb) { return f32_of(q8_value_bits((uint32_t)code, emin, mb)); }

/* code -> value, without branches (selects, so loops over them vectorize) */
static inline float q8_m_value(uint32_t c) {
    uint32_t mag = c & 127u, u = q8_value_bits(mag, Q8_M_EMIN, Q8_M_MB);
    return f32_of((mag ? u : 0u) | (c & 128u) << 24);
}

static inline float q8_v_value(uint32_t c) { return f32_of(c ? q8_value_bits(c, Q8_V_EMIN, Q8_V_MB) : 0u); }

float q8_decode_m(uint8_t c) { return q8_m_value(c); }

float q8_decode_v(uint8_t c) { return q8_v_value(c); }

/* As adamw_step, with m, v in bf16 (n,) uint16; offset: the tensor's first
 * element in the flat buffer (for the rounding bits). */
void adamw_step_bf16(float *params, uint16_t *m, uint16_t *v,
                     const float *grads, int decay,
                     float lr, float beta1, float beta2, float eps, float weight_decay,
                     int64_t step, float grad_scale, uint64_t seed, int64_t offset, int64_t n) {
    const adam_consts c = adam_setup(lr, beta1, beta2, eps, weight_decay, decay, step);
    const uint64_t km = sr_key(seed, step, 0), kv = sr_key(seed, step, 1);
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = grads[i] * grad_scale;
        float mi = c.beta1 * bf16_decode(m[i]) + c.one_m_b1 * g;
        float vi = c.beta2 * bf16_decode(v[i]) + c.one_m_b2 * (g * g);
        const uint64_t idx = (uint64_t)(offset + i);
        const uint32_t word = sr_index_word((uint32_t)idx, (uint32_t)(idx >> 32));
        m[i] = bf16_round_sr(mi, sr_mix(km, word));
        v[i] = bf16_round_sr(vi, sr_mix(kv, word));
        params[i] = adam_param(params[i], mi, vi, &c);
    }
}

/* The 8-bit update, one block of len <= Q8_BLOCK elements at a time, in three
 * branch-free loops the compiler vectorizes (AVX-512, AVX2, NEON) with the
 * operation order of the scalar code, so every build gives the same bits:
 * decode + update (the new moments to mb, vb), the block's absmaxes, encode.
 * Weights are float32 (pf) or bf16 (pw, decoded here and stored back rounded
 * stochastically with stream SR_STREAM_WEIGHTS: the same bits as bf16_to_f32,
 * the float32 update, f32_to_bf16_sr). */
enum { SR_STREAM_WEIGHTS = 2 };

/* u in [0, 1] (or NaN: 0) -> code 0..(mag max) with mb mantissa bits, rounded
 * stochastically with r; floor_up: never 0 for u > 0. Written without branches. */
static inline uint32_t q8_encode(float u, int emin, int mb, uint32_t r, int floor_up) {
    const float umin = q8_value(1, emin, mb);
    uint32_t t = bits_of(u) + (r & ((1u << (23 - mb)) - 1));
    uint32_t normal = (t >> (23 - mb)) - ((uint32_t)(emin + 127) << mb);  /* (e - emin) << mb | f */
    uint32_t small = floor_up ? 1u : (uint32_t)((float)(int32_t)(r >> 8) * (1.0f / 16777216.0f) * umin < u);
    uint32_t code = u < umin ? small : normal;
    return (u > 0.0f) ? code : 0u;
}

__attribute__((always_inline))
static inline void q8_block(int bf16w, float *pf, uint16_t *pw, uint8_t *m, uint8_t *v, float *m_absmax,
                            float *v_absmax, const float *grads, const adam_consts *c,
                            float grad_scale, uint64_t km, uint64_t kv, uint64_t kw,
                            uint64_t idx0, int64_t len) {
    float mb[Q8_BLOCK], vb[Q8_BLOCK];  /* the block's new moments */
    const float sm = *m_absmax, sv = *v_absmax;
    /* element j's index idx0 + j in 32-bit halves (the high half carried), so the loops
     * below hash in 32-bit lanes */
    const uint32_t lo0 = (uint32_t)idx0, hi0 = (uint32_t)(idx0 >> 32);
    for (int64_t j = 0; j < len; j++) {
        float g = grads[j] * grad_scale;
        float mi = c->beta1 * (q8_m_value(m[j]) * sm) + c->one_m_b1 * g;
        float vi = c->beta2 * (q8_v_value(v[j]) * sv) + c->one_m_b2 * (g * g);
        mb[j] = mi;
        vb[j] = vi;
        if (bf16w) {
            float p = adam_param(bf16_decode(pw[j]), mi, vi, c);
            const uint32_t lo = lo0 + (uint32_t)j, hi = hi0 + (uint32_t)(lo < lo0);
            pw[j] = bf16_round_sr(p, sr_mix(kw, sr_index_word(lo, hi)));
        } else {
            pf[j] = adam_param(pf[j], mi, vi, c);
        }
    }
    /* the absmaxes as integer maxima of the magnitudes' bits (the same order for
     * floats >= 0; a NaN moment, from a NaN gradient, gives a NaN absmax) */
    uint32_t am_bits = 0, av_bits = 0;
    for (int64_t j = 0; j < len; j++) {
        uint32_t a = bits_of(mb[j]) & 0x7FFFFFFFu, b = bits_of(vb[j]) & 0x7FFFFFFFu;
        am_bits = a > am_bits ? a : am_bits;
        av_bits = b > av_bits ? b : av_bits;
    }
    const float am = f32_of(am_bits), av = f32_of(av_bits);
    *m_absmax = am;
    *v_absmax = av;
    const float rm = am > 0.0f ? 1.0f / am : 0.0f, rv = av > 0.0f ? 1.0f / av : 0.0f;
    for (int64_t j = 0; j < len; j++) {
        const uint32_t lo = lo0 + (uint32_t)j, hi = hi0 + (uint32_t)(lo < lo0);
        const uint32_t word = sr_index_word(lo, hi);
        float um = fabsf(mb[j]) * rm, uv = vb[j] * rv;
        um = um < 1.0f ? um : 1.0f;  /* as fminf(u, 1) */
        uv = uv < 1.0f ? uv : 1.0f;
        uint32_t cm = q8_encode(um, Q8_M_EMIN, Q8_M_MB, sr_mix(km, word), 0);
        m[j] = (uint8_t)(cm | ((uint32_t)(mb[j] < 0.0f) & (uint32_t)(cm != 0)) << 7);
        v[j] = (uint8_t)q8_encode(uv, Q8_V_EMIN, Q8_V_MB, sr_mix(kv, word), 1);
    }
}

/* Every block of a tensor (n,): Q8_UPDATE(BF16W, PF, PW) is the body of each public kernel,
 * BF16W a literal, so that each kernel's parallel loop is outlined with its own weights'
 * type and its block loops are compiled without a branch (a runtime flag shared by one
 * outlined loop left the first loop unvectorized on AVX2, which cannot mask 16-bit stores). */
#define Q8_UPDATE(BF16W, PF, PW)                                                                      \
    const adam_consts c = adam_setup(lr, beta1, beta2, eps, weight_decay, decay, step);            \
    const uint64_t km = sr_key(seed, step, 0), kv = sr_key(seed, step, 1);                         \
    const uint64_t kw = sr_key(seed, step, SR_STREAM_WEIGHTS);                                     \
    const int64_t nblocks = (n + Q8_BLOCK - 1) / Q8_BLOCK;                                         \
    _Pragma("omp parallel for schedule(static)")                                                  \
    for (int64_t b = 0; b < nblocks; b++) {                                                        \
        const int64_t lo = b * Q8_BLOCK, len = lo + Q8_BLOCK < n ? Q8_BLOCK : n - lo;              \
        q8_block(BF16W, BF16W ? NULL : (PF) + lo, BF16W ? (PW) + lo : NULL, m + lo, v + lo,        \
                 m_absmax + b, v_absmax + b, grads + lo, &c, grad_scale, km, kv, kw,               \
                 (uint64_t)(offset + lo), len);                                                    \
    }

/* As adamw_step, with m, v as 8-bit codes (n,) and per-block absmax scales
 * m_absmax, v_absmax (ceil(n / Q8_BLOCK),). The update uses the new moments
 * in fp32; then each block's new absmax is taken and its moments re-encoded:
 * no fp32 copy of the moments exists beyond one block on the stack. */
void adamw_step_q8(float *params, uint8_t *m, uint8_t *v, float *m_absmax, float *v_absmax,
                   const float *grads, int decay,
                   float lr, float beta1, float beta2, float eps, float weight_decay,
                   int64_t step, float grad_scale, uint64_t seed, int64_t offset, int64_t n) {
    uint16_t *const no_bf16 = NULL;
    Q8_UPDATE(0, params, no_bf16)
}

/* As adamw_step_q8 with the weights stored as bf16 (n,) bits: decoded, updated
 * in float32 and stored back rounded stochastically (stream SR_STREAM_WEIGHTS),
 * the same bits as bf16_to_f32 + adamw_step_q8 + f32_to_bf16_sr, in one pass:
 * 12 bytes per parameter (2 + 2 weight, 4 gradient, 2 + 2 codes). */
void adamw_step_q8_bf16w(uint16_t *params, uint8_t *m, uint8_t *v, float *m_absmax, float *v_absmax,
                         const float *grads, int decay,
                         float lr, float beta1, float beta2, float eps, float weight_decay,
                         int64_t step, float grad_scale, uint64_t seed, int64_t offset, int64_t n) {
    float *const no_f32 = NULL;
    Q8_UPDATE(1, no_f32, params)
}

/* ---- bf16 weights ----
 * Matrices stored as bf16 are decoded to float32 for the products and the
 * update (bf16_to_f32), and the updated float32 values stored back rounded
 * stochastically with the bits of stream 2 (f32_to_bf16_sr): element i of a
 * tensor at flat-buffer offset `offset` uses sr_bits(sr_key(seed, step, 2),
 * offset + i). Oracle: bf16_to_f32 / f32_to_bf16_sr in ref.py. */

void bf16_to_f32(float *out, const uint16_t *h, int64_t n) {
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = bf16_decode(h[i]);
}

void f32_to_bf16_sr(uint16_t *out, const float *x, uint64_t seed, int64_t step, int64_t offset,
                    int64_t n) {
    const uint64_t k = sr_key(seed, step, SR_STREAM_WEIGHTS);
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = bf16_round_sr(x[i], sr_bits(k, (uint64_t)(offset + i)));
}

/* x (n,) -> sum of squares in double. Fixed chunks of CHUNK elements, each
 * summed over NLANE independent double lanes (x[i] goes to lane i % NLANE,
 * so the compiler can vectorize without reassociating), the lanes added in
 * order, then the chunk sums added in order: the result is the same for any
 * thread count. Writes *out; returns 0, or -1 when malloc failed. */
int grad_norm_sq(const float *x, int64_t n, double *out) {
    enum { CHUNK = 1 << 14, NLANE = 16 };
    int64_t nchunks = (n + CHUNK - 1) / CHUNK;
    *out = 0.0;
    if (nchunks == 0) return 0;
    double *part = (double *)malloc(sizeof(double) * (size_t)nchunks);  /* (nchunks,) */
    if (part == NULL) return -1;
    #pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t lo = c * CHUNK, hi = lo + CHUNK < n ? lo + CHUNK : n;
        double lane[NLANE] = {0.0};
        int64_t i = lo;
        for (; i + NLANE <= hi; i += NLANE)
            for (int j = 0; j < NLANE; j++) lane[j] += (double)x[i + j] * (double)x[i + j];
        double s = 0.0;
        for (int j = 0; j < NLANE; j++) s += lane[j];
        for (; i < hi; i++) s += (double)x[i] * (double)x[i];
        part[c] = s;
    }
    double total = 0.0;
    for (int64_t c = 0; c < nchunks; c++) total += part[c];
    free(part);
    *out = total;
    return 0;
}

int codette_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

const char *codette_build_info(void) {
#ifdef _OPENMP
    return "simd=" SIMD_NAME " openmp=yes";
#else
    return "simd=" SIMD_NAME " openmp=no";
#endif
}
