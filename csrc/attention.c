/* Causal self-attention, forward and backward, flash-style. Oracle:
 * attention_forward / attention_backward in codette_np/kernels/ref.py.
 *
 * The (T, T) score matrix is never stored. Forward walks the keys of each
 * tile of R query rows in blocks of BC, keeping a running max m, running sum
 * l and unnormalized output o (online softmax), and saves
 * lse = m + log(l) per row. Backward recomputes P = exp(S - lse) block by
 * block (FlashAttention-2): D_i = rowsum(dO_i * O_i), dP = dO V^T,
 * dS = P * (dP - D) * scale, dQ = dS K, dK = dS^T Q, dV = P^T dO.
 *
 * Layout: q, k, v, out, dout, dq, dk, dv are (B, T, NH, hs) with hs
 * contiguous and heads adjacent; each has its own row stride (elements
 * between rows t and t+1 of one head, e.g. 3C inside the (N, 3C) qkv
 * buffer, C for out). Row t of head h of batch b starts at
 * x + (b*T + t)*stride + h*hs. lse is (B, NH, T), contiguous.
 *
 * Threads: one (b, h) pair per loop iteration, schedule(static). A thread
 * owns the whole (T, hs) slices of its head's outputs and sums in a fixed
 * order, so results are bit-identical for any thread count.
 *
 * Causality uses explicit loop bounds, never -inf: a score (i, j) with
 * j > i is never read, and products involving it are never formed, so a
 * NaN in q/k/v/dout reaches exactly the outputs that depend on it causally.
 *
 * Scratch (malloc'd per thread, per call): O(T * hs) floats, see
 * attention_scratch_floats. Nothing is O(T^2).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "codette.h"
#include "simd.h"

#define BC 64 /* keys per block (a multiple of VF) */
#define BQ 64 /* backward: query rows per block */
#define R 4   /* query rows per register tile */

/* Register blocking: an R x (CW vectors) tile of accumulators. Wider
 * columns are split into near-equal chunks of at most CW vectors. AVX2 has
 * 16 registers: 4 x 3 accumulators, 3 loads and a broadcast. */
#if VF == 8
#define CW 3
#else
#define CW 4
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Pin a vector in a register: without this, GCC folds the load of the
 * shared operand into every FMA that uses it (R loads instead of one). */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#if defined(__AVX512F__)
#define KEEP_IN_REG(x) __asm__("" : "+v"(x))
#else
#define KEEP_IN_REG(x) __asm__("" : "+x"(x))
#endif
#else
#define KEEP_IN_REG(x) ((void)0)
#endif

static inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* width of the next column chunk when n vectors remain: the n vectors are
 * cut into ceil(n / CW) near-equal chunks (8 -> 3 3 2, 10 -> 3 3 2 2) */
static inline int chunk(int n) {
    const int nchunks = (n + CW - 1) / CW;
    return (n + nchunks - 1) / nchunks;
}

/* ---- micro-kernels -------------------------------------------------------- */

/* s (R, BC) columns [c0, c0 + nw*VF) = scale * sum_d a[r][d] * bt[d*ldb + col].
 * a: R row pointers (hs floats each); bt (hs, ldb): the key block transposed. */
ALWAYS_INLINE void abt_kernel(float *s, const float *const *a, const float *bt, int64_t ldb,
                              int hs, int c0, float scale, const int nw) {
    vf_t acc[R][CW];
    for (int r = 0; r < R; r++)
        for (int w = 0; w < nw; w++) acc[r][w] = vf_set1(0.0f);
    for (int d = 0; d < hs; d++) {
        const float *brow = bt + d * ldb + c0;
        vf_t bv[CW];
        for (int w = 0; w < nw; w++) {
            bv[w] = vf_load(brow + w * VF);
            KEEP_IN_REG(bv[w]);
        }
        for (int r = 0; r < R; r++) {
            vf_t av = vf_set1(a[r][d]);
            for (int w = 0; w < nw; w++) acc[r][w] = vf_fma(av, bv[w], acc[r][w]);
        }
    }
    vf_t sv = vf_set1(scale);
    for (int r = 0; r < R; r++)
        for (int w = 0; w < nw; w++) vf_store(s + r * BC + c0 + w * VF, vf_mul(acc[r][w], sv));
}

/* s (R, BC) columns [0, ncols) = scale * a . bt ; ncols a multiple of VF, <= BC */
static void tile_abt(float *s, const float *const *a, const float *bt, int64_t ldb,
                     int hs, int ncols, float scale) {
    for (int v0 = 0, nvec = ncols / VF; v0 < nvec;) {
        const int nw = chunk(nvec - v0), c0 = v0 * VF;
        v0 += nw;
        switch (nw) {
        case 1: abt_kernel(s, a, bt, ldb, hs, c0, scale, 1); break;
        case 2: abt_kernel(s, a, bt, ldb, hs, c0, scale, 2); break;
#if CW >= 3
        case 3: abt_kernel(s, a, bt, ldb, hs, c0, scale, 3); break;
#endif
#if CW >= 4
        case 4: abt_kernel(s, a, bt, ldb, hs, c0, scale, 4); break;
#endif
        }
    }
}

/* c[r*ldc + col] += sum_{t<kc} a[r*ars + t*aks] * b[t*ldb + col] for rows
 * r < nr and columns [c0, c0 + nw*VF). */
ALWAYS_INLINE void acc_kernel(float *c, int64_t ldc, const float *a, int64_t ars, int64_t aks,
                              const float *b, int64_t ldb, int64_t kc, int c0,
                              const int nr, const int nw) {
    vf_t acc[R][CW];
    for (int r = 0; r < nr; r++)
        for (int w = 0; w < nw; w++) acc[r][w] = vf_load(c + r * ldc + c0 + w * VF);
    for (int64_t t = 0; t < kc; t++) {
        const float *brow = b + t * ldb + c0;
        vf_t bv[CW];
        for (int w = 0; w < nw; w++) {
            bv[w] = vf_load(brow + w * VF);
            KEEP_IN_REG(bv[w]);
        }
        for (int r = 0; r < nr; r++) {
            vf_t av = vf_set1(a[r * ars + t * aks]);
            for (int w = 0; w < nw; w++) acc[r][w] = vf_fma(av, bv[w], acc[r][w]);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int w = 0; w < nw; w++) vf_store(c + r * ldc + c0 + w * VF, acc[r][w]);
}

#define ACC_CASE(NR, NW) case NW: acc_kernel(c, ldc, a, ars, aks, b, ldb, kc, c0, NR, NW); break;
#if CW >= 4
#define ACC_CASES(NR) ACC_CASE(NR, 1) ACC_CASE(NR, 2) ACC_CASE(NR, 3) ACC_CASE(NR, 4)
#elif CW == 3
#define ACC_CASES(NR) ACC_CASE(NR, 1) ACC_CASE(NR, 2) ACC_CASE(NR, 3)
#else
#define ACC_CASES(NR) ACC_CASE(NR, 1) ACC_CASE(NR, 2)
#endif

/* c (nr rows, stride ldc; nvec*VF columns) += A . b, A[r][t] = a[r*ars + t*aks]
 * (nr, kc), b (kc, ldb). nr is R or 1. */
static void gemm_acc(float *c, int64_t ldc, const float *a, int64_t ars, int64_t aks,
                     const float *b, int64_t ldb, int64_t kc, int nvec, int nr) {
    if (kc <= 0) return;
    for (int v0 = 0; v0 < nvec;) {
        const int nw = chunk(nvec - v0), c0 = v0 * VF;
        if (nr == R) {
            switch (nw) { ACC_CASES(R) }
        } else {
            switch (nw) { ACC_CASES(1) }
        }
        v0 += nw;
    }
}

/* y (n,) += alpha * x (n,); n a multiple of VF */
static inline void axpy(float *y, float alpha, const float *x, int n) {
    vf_t av = vf_set1(alpha);
    for (int j = 0; j < n; j += VF) vf_store(y + j, vf_fma(av, vf_load(x + j), vf_load(y + j)));
}

/* y (n,) *= alpha; n a multiple of VF */
static inline void scal(float *y, float alpha, int n) {
    vf_t av = vf_set1(alpha);
    for (int j = 0; j < n; j += VF) vf_store(y + j, vf_mul(av, vf_load(y + j)));
}

/* max of s (n,), n >= 1. A NaN may or may not win here; either way it
 * reaches the row through exp(s - max) in row_exp. */
static inline float row_max(const float *s, int n) {
    int j = 0;
    float m = s[0];
    if (n >= VF) {
        vf_t mv = vf_load(s);
        for (j = VF; j + VF <= n; j += VF) mv = vf_max(mv, vf_load(s + j));
        m = vf_hmax(mv);
    }
    for (; j < n; j++) m = s[j] > m ? s[j] : m;
    return m;
}

/* p[j] = exp(s[j] - shift) for j < nv, p[j] = 0 for nv <= j < ncols
 * (ncols a multiple of VF, >= nv); returns the sum of p[0..nv). */
static inline float row_exp(float *p, const float *s, float shift, int nv, int ncols) {
    vf_t sh = vf_set1(shift), acc = vf_set1(0.0f);
    int j = 0;
    for (; j + VF <= nv; j += VF) {
        vf_t e = vf_exp(vf_sub(vf_load(s + j), sh));
        vf_store(p + j, e);
        acc = vf_add(acc, e);
    }
    float sum = vf_hsum(acc);
    if (j < nv) { /* partial vector: keep lanes < nv */
        vf_store(p + j, vf_exp(vf_sub(vf_load(s + j), sh)));
        for (int t = j; t < nv; t++) sum += p[t];
        for (int t = nv; t < j + VF; t++) p[t] = 0.0f;
        j += VF;
    }
    for (; j < ncols; j++) p[j] = 0.0f;
    return sum;
}

/* Rows of q/k/v inside the (N, 3C) buffer are 3C floats apart, each in its
 * own 4 KB page, where hardware prefetchers do not follow; the copy loops
 * below prefetch AHEAD rows in advance instead. */
#define AHEAD 8

/* prefetch the cache lines of one row of hs floats (for writing if write) */
static inline void prefetch_row(const float *x, int hs, int write) {
    for (int d = 0; d < hs; d += 16) {
        if (write) __builtin_prefetch(x + d, 1, 3);
        else __builtin_prefetch(x + d, 0, 3);
    }
    if (write) __builtin_prefetch(x + hs - 1, 1, 3);
    else __builtin_prefetch(x + hs - 1, 0, 3);
}

/* dst (hs, ldd) = src (n, hs; row stride ss) transposed, columns [n, ncols)
 * zero. With AVX2, 8 x 8 blocks through registers; the rest element-wise,
 * 8 source rows at a time so their cache lines stay hot. */
#if defined(__AVX2__)
/* dst rows 0..7 (stride ldd), 8 floats each = src rows 0..7 (stride ss), 8 floats each, transposed */
static inline void transpose8x8(float *dst, int64_t ldd, const float *src, int64_t ss) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ss);
    __m256 r2 = _mm256_loadu_ps(src + 2 * ss), r3 = _mm256_loadu_ps(src + 3 * ss);
    __m256 r4 = _mm256_loadu_ps(src + 4 * ss), r5 = _mm256_loadu_ps(src + 5 * ss);
    __m256 r6 = _mm256_loadu_ps(src + 6 * ss), r7 = _mm256_loadu_ps(src + 7 * ss);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

static void transpose_rows(float *dst, int64_t ldd, const float *src, int64_t ss,
                           int64_t n, int64_t ncols, int hs) {
    for (int64_t j0 = 0; j0 < n; j0 += 8) {
        const int64_t nj = min64(8, n - j0);
        for (int64_t j = j0 + AHEAD; j < min64(n, j0 + AHEAD + 8); j++) prefetch_row(src + j * ss, hs, 0);
        int d0 = 0;
#if defined(__AVX2__)
        if (nj == 8)
            for (; d0 + 8 <= hs; d0 += 8) transpose8x8(dst + d0 * ldd + j0, ldd, src + j0 * ss + d0, ss);
#endif
        for (int d = d0; d < hs; d++) {
            float *out = dst + d * ldd + j0;
            const float *in = src + j0 * ss + d;
            for (int64_t jj = 0; jj < nj; jj++) out[jj] = in[jj * ss];
        }
    }
    for (int d = 0; d < hs; d++)
        for (int64_t j = n; j < ncols; j++) dst[d * ldd + j] = 0.0f;
}

/* a leading dimension >= n, a multiple of VF and of an odd number of 64-byte lines */
static int64_t pad_ld(int64_t n) {
    int64_t ld = round_up(n, 16);
    return (ld / 16) % 2 ? ld : ld + 16;
}

/* dst (n, ldd) = src (n, hs; row stride ss), columns [hs, ldd) zero. The
 * copies are contiguous: rows of q/k/v/dout inside the (N, 3C) buffer are
 * 3C floats apart, so in place they would fall into a few L1 sets. */
static void pad_rows(float *dst, int64_t ldd, const float *src, int64_t ss, int64_t n, int hs) {
    for (int64_t j = 0; j < n; j++) {
        if (j + AHEAD < n) prefetch_row(src + (j + AHEAD) * ss, hs, 0);
        memcpy(dst + j * ldd, src + j * ss, sizeof(float) * hs);
        for (int64_t d = hs; d < ldd; d++) dst[j * ldd + d] = 0.0f;
    }
}

/* dst (n, hs; row stride ds) = the first hs columns of src (n, lds) */
static void store_rows(float *dst, int64_t ds, const float *src, int64_t lds, int64_t n, int hs) {
    for (int64_t j = 0; j < n; j++) {
        if (j + AHEAD < n) prefetch_row(dst + (j + AHEAD) * ds, hs, 1);
        memcpy(dst + j * ds, src + j * lds, sizeof(float) * hs);
    }
}

/* ---- forward ------------------------------------------------------------- */

/* Forward scratch per thread, in floats. */
static int64_t fwd_scratch_floats(int64_t T, int64_t hs) {
    int64_t hsp = round_up(hs, VF), ldk = pad_ld(T);
    return hs * ldk + T * hsp + R * hsp + 2 * R * BC;
}

/* One tile of nr query rows [r0, r0 + nr) of one head (nr is R, or 1 for
 * the rows left over). kt (hs, ldk): keys transposed; vp (T, hsp): values
 * padded with zeros to hsp; o (R, hsp), s and p (R, BC): scratch. */
static void fwd_tile(float *out, int64_t so, float *lse, const float *q, int64_t sq,
                     const float *kt, int64_t ldk, const float *vp, int hs, int hsp,
                     int64_t r0, int nr, float scale, float *o, float *s, float *p) {
    const float *qrow[R]; /* rows past nr repeat the last row; their results are unused */
    float m[R] = {0}, l[R] = {0}; /* running max and sum per row */
    for (int r = 0; r < R; r++) qrow[r] = q + (r0 + (r < nr ? r : nr - 1)) * sq;
    memset(o, 0, sizeof(float) * R * hsp);
    const int64_t nkeys = r0 + nr; /* the last row sees keys [0, r0 + nr) */
    const int nvec = hsp / VF;
    for (int64_t jb = 0; jb < nkeys; jb += BC) {
        const int nk = (int)min64(BC, nkeys - jb); /* keys of this block some row sees */
        const int ncols = (int)round_up(nk, VF);
        tile_abt(s, qrow, kt + jb, ldk, hs, ncols, scale); /* s (R, ncols) scaled scores */
        for (int r = 0; r < nr; r++) {
            const int nv = (int)min64(nk, r0 + r - jb + 1); /* keys j <= i in this block */
            float *pr = p + r * BC;
            if (nv <= 0) { /* row sees none of these keys */
                memset(pr, 0, sizeof(float) * ncols);
                continue;
            }
            const float bmax = row_max(s + r * BC, nv);
            if (jb == 0) {
                m[r] = bmax;
                l[r] = row_exp(pr, s + r * BC, bmax, nv, ncols);
            } else {
                const float mnew = bmax > m[r] ? bmax : m[r];
                const float corr = expf(m[r] - mnew);
                m[r] = mnew;
                l[r] = l[r] * corr + row_exp(pr, s + r * BC, mnew, nv, ncols);
                scal(o + r * hsp, corr, hsp);
            }
        }
        /* o += p . v over keys every row of the tile sees: j <= r0 */
        const int nfull = (int)min64(nk, r0 - jb + 1);
        gemm_acc(o, hsp, p, BC, 1, vp + jb * hsp, hsp, nfull, nvec, nr);
        /* the diagonal: key j only for rows i >= j */
        for (int j = nfull > 0 ? nfull : 0; j < nk; j++)
            for (int r = 0; r < nr; r++)
                if (r0 + r >= jb + j) axpy(o + r * hsp, p[r * BC + j], vp + (jb + j) * hsp, hsp);
    }
    for (int r = 0; r < nr; r++) {
        const float inv = 1.0f / l[r];
        const float *src = o + r * hsp;
        float *orow = out + (r0 + r) * so;
        for (int d = 0; d < hs; d++) orow[d] = src[d] * inv;
        lse[r0 + r] = m[r] + logf(l[r]);
    }
}

/* One head: out (T, hs) rows of stride so, lse (T,) <- q, k, v (T, hs) rows
 * of strides sq, sk, sv. scratch: fwd_scratch_floats(T, hs) floats. */
static void head_forward(float *out, int64_t so, float *lse,
                         const float *q, int64_t sq, const float *k, int64_t sk,
                         const float *v, int64_t sv, int64_t T, int hs, float scale, float *scratch) {
    const int hsp = (int)round_up(hs, VF);
    const int64_t ldk = pad_ld(T);
    float *kt = scratch;          /* (hs, ldk) k transposed */
    float *vp = kt + hs * ldk;    /* (T, hsp) v padded */
    float *o = vp + T * hsp;      /* (R, hsp) output accumulator */
    float *s = o + R * hsp;       /* (R, BC) scores */
    float *p = s + R * BC;        /* (R, BC) probabilities */
    transpose_rows(kt, ldk, k, sk, T, ldk, hs);
    pad_rows(vp, hsp, v, sv, T, hs);
    int64_t r0 = 0;
    for (; r0 + R <= T; r0 += R) {
        for (int64_t i = r0 + R; i < min64(T, r0 + 2 * R); i++) { /* the next tile's rows */
            prefetch_row(q + i * sq, hs, 0);
            prefetch_row(out + i * so, hs, 1);
        }
        fwd_tile(out, so, lse, q, sq, kt, ldk, vp, hs, hsp, r0, R, scale, o, s, p);
    }
    for (; r0 < T; r0++)
        fwd_tile(out, so, lse, q, sq, kt, ldk, vp, hs, hsp, r0, 1, scale, o, s, p);
}

int attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                      int64_t B, int64_t T, int64_t NH, int64_t hs,
                      int64_t out_st, int64_t q_st, int64_t k_st, int64_t v_st) {
    if (B <= 0 || T <= 0 || NH <= 0 || hs <= 0) return 0;
    const float scale = (float)(1.0 / sqrt((double)hs));
    const size_t bytes = sizeof(float) * (size_t)round_up(fwd_scratch_floats(T, hs), 16);
    int failed = 0;
    #pragma omp parallel
    {
        float *scratch = (float *)aligned_alloc(64, bytes);
        #pragma omp for schedule(static)
        for (int64_t bh = 0; bh < B * NH; bh++) {
            if (scratch == NULL) continue;
            const int64_t b = bh / NH, h = bh % NH;
            head_forward(out + b * T * out_st + h * hs, out_st, lse + bh * T,
                         q + b * T * q_st + h * hs, q_st, k + b * T * k_st + h * hs, k_st,
                         v + b * T * v_st + h * hs, v_st, T, (int)hs, scale, scratch);
        }
        if (scratch == NULL) {
            #pragma omp atomic write
            failed = 1;
        }
        free(scratch);
    }
    return failed ? -1 : 0;
}

/* ---- backward ------------------------------------------------------------ */

/* Backward scratch per thread, in floats. */
static int64_t bwd_scratch_floats(int64_t T, int64_t hs) {
    int64_t hsp = round_up(hs, VF);
    return 3 * T * hsp + T + 2 * hs * BC + 3 * BC * hsp + 2 * BQ * BC + 2 * R * BC;
}

/* One head. Outputs dq, dk, dv (T, hs) with row strides sdq, sdk, sdv; inputs
 * dout, q, k, v, out (T, hs) with their row strides; lse (T,). */
static void head_backward(float *dq, int64_t sdq, float *dk, int64_t sdk, float *dv, int64_t sdv,
                          const float *dout, int64_t sdo, const float *q, int64_t sq,
                          const float *k, int64_t sk, const float *v, int64_t sv,
                          const float *out, int64_t so, const float *lse,
                          int64_t T, int hs, float scale, float *scratch) {
    const int hsp = (int)round_up(hs, VF), nvec = hsp / VF;
    float *qp = scratch;          /* (T, hsp) q padded */
    float *dop = qp + T * hsp;    /* (T, hsp) dout padded */
    float *dqp = dop + T * hsp;   /* (T, hsp) dq accumulator */
    float *dd = dqp + T * hsp;    /* (T,) D = rowsum(dout * out) */
    float *kt = dd + T;           /* (hs, BC) key block transposed */
    float *vt = kt + hs * BC;     /* (hs, BC) value block transposed */
    float *kp = vt + hs * BC;     /* (BC, hsp) key block padded */
    float *dkp = kp + BC * hsp;   /* (BC, hsp) dk accumulator */
    float *dvp = dkp + BC * hsp;  /* (BC, hsp) dv accumulator */
    float *P = dvp + BC * hsp;    /* (BQ, BC) probabilities */
    float *dS = P + BQ * BC;      /* (BQ, BC) score gradients, times scale */
    float *s = dS + BQ * BC;      /* (R, BC) scores */
    float *dp = s + R * BC;       /* (R, BC) dP = dout . v^T */

    pad_rows(qp, hsp, q, sq, T, hs);
    pad_rows(dop, hsp, dout, sdo, T, hs);
    for (int64_t i = 0; i < T; i++) {
        if (i + AHEAD < T) prefetch_row(out + (i + AHEAD) * so, hs, 0);
        const float *dr = dout + i * sdo, *orow = out + i * so;
        float acc = 0.0f;
        for (int d = 0; d < hs; d++) acc += dr[d] * orow[d];
        dd[i] = acc;
    }
    memset(dqp, 0, sizeof(float) * T * hsp);

    for (int64_t jb = 0; jb < T; jb += BC) {
        const int nk = (int)min64(BC, T - jb);
        const int ncols = (int)round_up(nk, VF);
        transpose_rows(kt, BC, k + jb * sk, sk, nk, BC, hs);
        transpose_rows(vt, BC, v + jb * sv, sv, nk, BC, hs);
        pad_rows(kp, hsp, k + jb * sk, sk, nk, hs);
        memset(dkp, 0, sizeof(float) * BC * hsp);
        memset(dvp, 0, sizeof(float) * BC * hsp);

        /* query rows before jb see none of these keys */
        for (int64_t ib = jb; ib < T; ib += BQ) {
            const int ni = (int)min64(BQ, T - ib);
            /* 1. P and dS for rows [ib, ib + ni) x keys [jb, jb + ncols) */
            for (int r0 = 0; r0 < ni; r0 += R) {
                const int nr = ni - r0 < R ? ni - r0 : R;
                const float *qrow[R], *drow[R];
                for (int r = 0; r < R; r++) {
                    const int64_t i = ib + r0 + (r < nr ? r : nr - 1);
                    qrow[r] = qp + i * hsp;
                    drow[r] = dop + i * hsp;
                }
                tile_abt(s, qrow, kt, BC, hs, ncols, scale);
                tile_abt(dp, drow, vt, BC, hs, ncols, 1.0f);
                for (int r = 0; r < nr; r++) {
                    const int64_t i = ib + r0 + r;
                    const int nv = (int)min64(nk, i - jb + 1); /* keys j <= i; >= 1 here */
                    float *pr = P + (r0 + r) * BC, *dsr = dS + (r0 + r) * BC;
                    row_exp(pr, s + r * BC, lse[i], nv, ncols);
                    const float di = dd[i];
                    int j = 0;
                    const vf_t dv_ = vf_set1(di), sc = vf_set1(scale);
                    for (; j + VF <= nv; j += VF) {
                        vf_t x = vf_mul(vf_load(pr + j), vf_sub(vf_load(dp + r * BC + j), dv_));
                        vf_store(dsr + j, vf_mul(x, sc));
                    }
                    for (; j < nv; j++) dsr[j] = (pr[j] * (dp[r * BC + j] - di)) * scale;
                    for (; j < ncols; j++) dsr[j] = 0.0f;
                }
            }
            /* 2. dv[j] += sum_i P[i][j] dout[i], dk[j] += sum_i dS[i][j] q[i], rows i >= j */
            int j0 = 0;
            for (; j0 < nk; j0 += R) {
                const int nj = nk - j0 < R ? nk - j0 : R;
                /* local rows from rfull on see all nj keys */
                const int rfull = (int)max64(0, jb + j0 + nj - 1 - ib);
                if (nj == R) {
                    gemm_acc(dvp + j0 * hsp, hsp, P + rfull * BC + j0, 1, BC,
                             dop + (ib + rfull) * hsp, hsp, ni - rfull, nvec, R);
                    gemm_acc(dkp + j0 * hsp, hsp, dS + rfull * BC + j0, 1, BC,
                             qp + (ib + rfull) * hsp, hsp, ni - rfull, nvec, R);
                } else {
                    for (int jj = 0; jj < nj; jj++) {
                        gemm_acc(dvp + (j0 + jj) * hsp, hsp, P + rfull * BC + j0 + jj, 1, BC,
                                 dop + (ib + rfull) * hsp, hsp, ni - rfull, nvec, 1);
                        gemm_acc(dkp + (j0 + jj) * hsp, hsp, dS + rfull * BC + j0 + jj, 1, BC,
                                 qp + (ib + rfull) * hsp, hsp, ni - rfull, nvec, 1);
                    }
                }
                /* the diagonal: rows before rfull, each with the keys it sees */
                for (int r = (int)max64(0, jb + j0 - ib); r < rfull && r < ni; r++)
                    for (int jj = 0; jj < nj; jj++) {
                        const int j = j0 + jj;
                        if (ib + r < jb + j) continue;
                        axpy(dvp + j * hsp, P[r * BC + j], dop + (ib + r) * hsp, hsp);
                        axpy(dkp + j * hsp, dS[r * BC + j], qp + (ib + r) * hsp, hsp);
                    }
            }
            /* 3. dq[i] += sum_j dS[i][j] k[j], keys j <= i */
            for (int r0 = 0; r0 < ni; r0 += R) {
                const int nr = ni - r0 < R ? ni - r0 : R;
                if (nr == R) {
                    /* keys j <= ib + r0 are seen by all rows of the tile */
                    const int nfull = (int)min64(nk, ib + r0 - jb + 1);
                    gemm_acc(dqp + (ib + r0) * hsp, hsp, dS + r0 * BC, BC, 1, kp, hsp, nfull, nvec, R);
                    for (int j = nfull; j < nk; j++)
                        for (int r = 0; r < R; r++)
                            if (ib + r0 + r >= jb + j)
                                axpy(dqp + (ib + r0 + r) * hsp, dS[(r0 + r) * BC + j], kp + j * hsp, hsp);
                } else {
                    for (int r = r0; r < ni; r++) {
                        const int nv = (int)min64(nk, ib + r - jb + 1);
                        gemm_acc(dqp + (ib + r) * hsp, hsp, dS + r * BC, BC, 1, kp, hsp, nv, nvec, 1);
                    }
                }
            }
        }
        store_rows(dk + jb * sdk, sdk, dkp, hsp, nk, hs);
        store_rows(dv + jb * sdv, sdv, dvp, hsp, nk, hs);
    }
    store_rows(dq, sdq, dqp, hsp, T, hs);
}

int attention_backward(float *dq, float *dk, float *dv,
                       const float *dout, const float *q, const float *k, const float *v,
                       const float *out, const float *lse,
                       int64_t B, int64_t T, int64_t NH, int64_t hs,
                       int64_t dq_st, int64_t dk_st, int64_t dv_st, int64_t dout_st,
                       int64_t q_st, int64_t k_st, int64_t v_st, int64_t out_st) {
    if (B <= 0 || T <= 0 || NH <= 0 || hs <= 0) return 0;
    const float scale = (float)(1.0 / sqrt((double)hs));
    const size_t bytes = sizeof(float) * (size_t)round_up(bwd_scratch_floats(T, hs), 16);
    int failed = 0;
    #pragma omp parallel
    {
        float *scratch = (float *)aligned_alloc(64, bytes);
        #pragma omp for schedule(static)
        for (int64_t bh = 0; bh < B * NH; bh++) {
            if (scratch == NULL) continue;
            const int64_t b = bh / NH, h = bh % NH;
            const int64_t o = h * hs;
            head_backward(dq + b * T * dq_st + o, dq_st, dk + b * T * dk_st + o, dk_st,
                          dv + b * T * dv_st + o, dv_st, dout + b * T * dout_st + o, dout_st,
                          q + b * T * q_st + o, q_st, k + b * T * k_st + o, k_st,
                          v + b * T * v_st + o, v_st, out + b * T * out_st + o, out_st,
                          lse + bh * T, T, (int)hs, scale, scratch);
        }
        if (scratch == NULL) {
            #pragma omp atomic write
            failed = 1;
        }
        free(scratch);
    }
    return failed ? -1 : 0;
}

int64_t attention_scratch_floats(int64_t T, int64_t hs, int backward) {
    return backward ? bwd_scratch_floats(T, hs) : fwd_scratch_floats(T, hs);
}
