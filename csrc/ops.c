/* Element-wise and row kernels: bias, residual, RoPE, GELU, the fused
 * bias+GELU kernels, and exp_shifted_sum (crossentropy.c's softmax exp).
 * Oracle: the functions of the same names in codette_np/kernels/ref.py.
 *
 * Threads split rows, or fixed blocks of ELT_BLOCK elements for the flat
 * kernels, so where the vector loop ends and the scalar tail starts never
 * depends on the thread count: results are identical for any thread count.
 * Column sums (bias_backward, gelu_bias_backward) use BIAS_BLOCKS fixed row
 * blocks, each summed in row order, then the block sums added in order. */
#include <stdlib.h>
#include <math.h>
#include "codette.h"
#include "simd.h"

#define ELT_BLOCK 4096  /* elements per work item of the flat kernels (multiple of VF) */
#define BIAS_BLOCKS 32  /* row blocks of the bias_backward column sums */

/* y (n,) = exp(x (n,) - shift); returns sum(y) in double. y may alias x. */
double exp_shifted_sum(float *y, const float *x, float shift, int64_t n) {
    const vf_t vs = vf_set1(shift);
    double total = 0.0;
    int64_t i = 0;
    /* float lanes over chunks of 64 vectors, chunk sums added in double */
    while (i + VF <= n) {
        int64_t end = i + 64 * VF < n ? i + 64 * VF : n;
        vf_t acc = vf_set1(0.0f);
        for (; i + VF <= end; i += VF) {
            vf_t e = vf_exp(vf_sub(vf_load(x + i), vs));
            vf_store(y + i, e);
            acc = vf_add(acc, e);
        }
        total += (double)vf_hsum(acc);
    }
    for (; i < n; i++) {
        y[i] = expf(x[i] - shift);
        total += (double)y[i];
    }
    return total;
}

/* ------------------------------------------------------------------------
 * GELU, tanh approximation, written with the logistic function:
 *   0.5 (1 + tanh(u)) = s = 1 / (1 + e),  e = exp(-2u),  u = c (x + a x^3)
 *   gelu(x)  = x s
 *   gelu'(x) = s + 2 x s (1 - s) c (1 + 3 a x^2),  1 - s = 1 / (1 + 1/e)
 * This avoids the cancellation of 1 + tanh(u) for negative x, never
 * overflows to NaN for large finite |x| (x^2 in the derivative is taken of x
 * clamped to +-1e4; beyond that the term is 0), and gives the reference's
 * inf/NaN: gelu(+inf) = +inf, gelu(-inf) = NaN, gelu'(+-inf) = NaN.
 *
 * gelu_vec / gelu_grad_vec hold the math once. The scalar tails run it on a
 * broadcast value (gelu_one / gelu_grad_one), so an element's result never
 * depends on where it lies: the row-wise fused kernels give the same bits as
 * the flat unfused ones for any shape. */
#define GELU_C 0.7978845608028654f  /* sqrt(2 / pi) */
#define GELU_A 0.044715f

/* gelu(x) per lane */
static inline vf_t gelu_vec(vf_t x) {
    vf_t x3 = vf_mul(vf_mul(x, x), x);
    vf_t e = vf_exp(vf_mul(vf_set1(-2.0f * GELU_C), vf_fma(vf_set1(GELU_A), x3, x)));  /* exp(-2u) */
    return vf_div(x, vf_add(vf_set1(1.0f), e));
}

/* gelu'(x) per lane */
static inline vf_t gelu_grad_vec(vf_t x) {
    const vf_t one = vf_set1(1.0f);
    vf_t x2 = vf_mul(x, x);
    vf_t e = vf_exp(vf_mul(vf_set1(-2.0f * GELU_C), vf_fma(vf_set1(GELU_A), vf_mul(x2, x), x)));
    vf_t s = vf_div(one, vf_add(one, e));
    vf_t sm = vf_div(one, vf_add(one, vf_div(one, e)));
    vf_t xc = vf_clamp(x, -1e4f, 1e4f);
    vf_t dt = vf_mul(vf_set1(GELU_C), vf_fma(vf_set1(3.0f * GELU_A), vf_mul(xc, xc), one));
    return vf_fma(vf_mul(x, vf_mul(vf_set1(2.0f), vf_mul(s, sm))), dt, s);  /* 2 s sm first: 2x may overflow */
}

/* lane 0 of x */
static inline float vf_first(vf_t x) {
    float t[VF];
    vf_store(t, x);
    return t[0];
}

static inline float gelu_one(float x) { return vf_first(gelu_vec(vf_set1(x))); }
static inline float gelu_grad_one(float x) { return vf_first(gelu_grad_vec(vf_set1(x))); }

/* ------------------------------------------------------------------------
 * bias, residual */

/* out (N, O) += bias (O,) */
void bias_forward(float *out, const float *bias, int64_t N, int64_t O) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *y = out + n * O;  /* (O,) */
        int64_t c = 0;
        for (; c + VF <= O; c += VF) vf_store(y + c, vf_add(vf_load(y + c), vf_load(bias + c)));
        for (; c < O; c++) y[c] += bias[c];
    }
}

/* p (O,) += dy (O,) */
static inline void colsum_add_row(float *p, const float *dy, int64_t O) {
    int64_t c = 0;
    for (; c + VF <= O; c += VF) vf_store(p + c, vf_add(vf_load(p + c), vf_load(dy + c)));
    for (; c < O; c++) p[c] += dy[c];
}

/* dx (O,) = dy (O,) * gelu'(x (O,)); p (O,) += dx. dx may be dy or x. */
static inline void gelu_grad_colsum_row(float *dx, float *p, const float *dy, const float *x,
                                        int64_t O) {
    int64_t c = 0;
    for (; c + VF <= O; c += VF) {
        vf_t d = vf_mul(vf_load(dy + c), gelu_grad_vec(vf_load(x + c)));
        vf_store(dx + c, d);
        vf_store(p + c, vf_add(vf_load(p + c), d));
    }
    for (; c < O; c++) {
        float d = dy[c] * gelu_grad_one(x[c]);
        dx[c] = d;
        p[c] += d;
    }
}

/* dbias (O,) = column sums of g (N, O), where g = dout (N, O) when pre is
 * NULL, else g = dout * gelu'(pre (N, O)), also written to dinp (N, O).
 * A fixed number of row blocks, each summed in row order, then the block
 * sums added in order. Returns -1 if scratch allocation fails. */
static int colsum_blocks(float *dbias, float *dinp, const float *dout, const float *pre,
                         int64_t N, int64_t O) {
    int64_t nblk = N < BIAS_BLOCKS ? N : BIAS_BLOCKS;
    if (nblk == 0) {  /* no rows: the sums are zero */
        for (int64_t c = 0; c < O; c++) dbias[c] = 0.0f;
        return 0;
    }
    float *part = (float *)malloc(sizeof(float) * (size_t)(nblk * O));  /* (nblk, O) */
    if (part == NULL) return -1;
    /* one parallel region, two static loops (the implicit barrier between
     * them orders the block sums before the column pass) */
    #pragma omp parallel
    {
        #pragma omp for schedule(static)
        for (int64_t b = 0; b < nblk; b++) {
            float *p = part + b * O;  /* (O,) */
            for (int64_t c = 0; c < O; c++) p[c] = 0.0f;
            for (int64_t n = b * N / nblk; n < (b + 1) * N / nblk; n++) {
                if (pre == NULL) colsum_add_row(p, dout + n * O, O);
                else gelu_grad_colsum_row(dinp + n * O, p, dout + n * O, pre + n * O, O);
            }
        }
        /* column c = block sums added in block order, VF columns at a time */
        int64_t nvec = O / VF;
        #pragma omp for schedule(static)
        for (int64_t cv = 0; cv <= nvec; cv++) {
            if (cv < nvec) {
                vf_t s = vf_load(part + cv * VF);
                for (int64_t b = 1; b < nblk; b++) s = vf_add(s, vf_load(part + b * O + cv * VF));
                vf_store(dbias + cv * VF, s);
            } else {  /* scalar tail */
                for (int64_t c = nvec * VF; c < O; c++) {
                    float s = part[c];
                    for (int64_t b = 1; b < nblk; b++) s += part[b * O + c];
                    dbias[c] = s;
                }
            }
        }
    }
    free(part);
    return 0;
}

/* dbias (O,) = column sums of dout (N, O). Returns -1 if scratch allocation fails. */
int bias_backward(float *dbias, const float *dout, int64_t N, int64_t O) {
    return colsum_blocks(dbias, NULL, dout, NULL, N, O);
}

/* out (N, C) = (resid (N, C) + branch (N, C)) + bias (C,); out may alias branch */
void residual_forward(float *out, const float *resid, const float *branch,
                      const float *bias, int64_t N, int64_t C) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *a = resid + n * C, *b = branch + n * C;  /* (C,) */
        float *y = out + n * C;                               /* (C,) */
        int64_t c = 0;
        for (; c + VF <= C; c += VF)
            vf_store(y + c, vf_add(vf_add(vf_load(a + c), vf_load(b + c)), vf_load(bias + c)));
        for (; c < C; c++) y[c] = (a[c] + b[c]) + bias[c];
    }
}

/* dresid (n,) += dbranch (n,) */
void residual_backward(float *dresid, const float *dbranch, int64_t n) {
    int64_t nblk = (n + ELT_BLOCK - 1) / ELT_BLOCK;
    #pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nblk; b++) {
        int64_t i = b * ELT_BLOCK, end = i + ELT_BLOCK < n ? i + ELT_BLOCK : n;
        for (; i + VF <= end; i += VF)
            vf_store(dresid + i, vf_add(vf_load(dresid + i), vf_load(dbranch + i)));
        for (; i < end; i++) dresid[i] += dbranch[i];
    }
}

/* ------------------------------------------------------------------------
 * RoPE, NEOX style: pairs (j, j + hs/2) of each head rotated by theta_{t,j}.
 * sgn = +1 rotates by +theta (forward), -1 by -theta (backward). */

static void rope_rotate(float *out, const float *inp, const float *cos, const float *sin,
                        int64_t B, int64_t T, int64_t NH, int64_t hs,
                        int64_t out_sb, int64_t out_st, int64_t inp_sb, int64_t inp_st,
                        float sgn) {
    const int64_t h = hs / 2;
    #pragma omp parallel for schedule(static)
    for (int64_t bt = 0; bt < B * T; bt++) {
        const int64_t b = bt / T, t = bt % T;
        const float *ct = cos + t * h, *st = sin + t * h;  /* (h,) */
        for (int64_t nh = 0; nh < NH; nh++) {
            const float *x = inp + b * inp_sb + t * inp_st + nh * hs;  /* (hs,) */
            float *y = out + b * out_sb + t * out_st + nh * hs;        /* (hs,) */
            int64_t j = 0;
            for (; j + VF <= h; j += VF) {
                vf_t x1 = vf_load(x + j), x2 = vf_load(x + h + j);
                vf_t c = vf_load(ct + j), s = vf_mul(vf_set1(sgn), vf_load(st + j));
                vf_store(y + j, vf_sub(vf_mul(x1, c), vf_mul(x2, s)));
                vf_store(y + h + j, vf_add(vf_mul(x2, c), vf_mul(x1, s)));
            }
            for (; j < h; j++) {
                float x1 = x[j], x2 = x[h + j], c = ct[j], s = sgn * st[j];
                y[j] = x1 * c - x2 * s;
                y[h + j] = x2 * c + x1 * s;
            }
        }
    }
}

/* out, inp (B, T, NH, hs) strided; cos, sin (T, hs/2) */
void rope_forward(float *out, const float *inp, const float *cos, const float *sin,
                  int64_t B, int64_t T, int64_t NH, int64_t hs,
                  int64_t out_sb, int64_t out_st, int64_t inp_sb, int64_t inp_st) {
    rope_rotate(out, inp, cos, sin, B, T, NH, hs, out_sb, out_st, inp_sb, inp_st, 1.0f);
}

/* dinp, dout (B, T, NH, hs) strided; cos, sin (T, hs/2) */
void rope_backward(float *dinp, const float *dout, const float *cos, const float *sin,
                   int64_t B, int64_t T, int64_t NH, int64_t hs,
                   int64_t dinp_sb, int64_t dinp_st, int64_t dout_sb, int64_t dout_st) {
    rope_rotate(dinp, dout, cos, sin, B, T, NH, hs, dinp_sb, dinp_st, dout_sb, dout_st, -1.0f);
}

/* ------------------------------------------------------------------------
 * GELU kernels (the math is gelu_vec / gelu_grad_vec above) */

/* out (n,) = gelu(inp (n,)) */
void gelu_forward(float *out, const float *inp, int64_t n) {
    int64_t nblk = (n + ELT_BLOCK - 1) / ELT_BLOCK;
    #pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nblk; b++) {
        int64_t i = b * ELT_BLOCK, end = i + ELT_BLOCK < n ? i + ELT_BLOCK : n;
        for (; i + VF <= end; i += VF) vf_store(out + i, gelu_vec(vf_load(inp + i)));
        for (; i < end; i++) out[i] = gelu_one(inp[i]);
    }
}

/* dinp (n,) = dout (n,) * gelu'(inp (n,)) */
void gelu_backward(float *dinp, const float *dout, const float *inp, int64_t n) {
    int64_t nblk = (n + ELT_BLOCK - 1) / ELT_BLOCK;
    #pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nblk; b++) {
        int64_t i = b * ELT_BLOCK, end = i + ELT_BLOCK < n ? i + ELT_BLOCK : n;
        for (; i + VF <= end; i += VF)
            vf_store(dinp + i, vf_mul(vf_load(dout + i), gelu_grad_vec(vf_load(inp + i))));
        for (; i < end; i++) dinp[i] = dout[i] * gelu_grad_one(inp[i]);
    }
}

/* pre (N, F) += bias (F,); out (N, F) = gelu(pre). One pass over pre. */
void bias_gelu_forward(float *out, float *pre, const float *bias, int64_t N, int64_t F) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *x = pre + n * F;  /* (F,) */
        float *y = out + n * F;  /* (F,) */
        int64_t c = 0;
        for (; c + VF <= F; c += VF) {
            vf_t h = vf_add(vf_load(x + c), vf_load(bias + c));
            vf_store(x + c, h);
            vf_store(y + c, gelu_vec(h));
        }
        for (; c < F; c++) {
            x[c] += bias[c];
            y[c] = gelu_one(x[c]);
        }
    }
}

/* dinp (N, F) = dout (N, F) * gelu'(pre (N, F)); dbias (F,) = column sums
 * of dinp, summed as bias_backward sums. One pass over dout and pre.
 * Returns -1 if scratch allocation fails. */
int gelu_bias_backward(float *dinp, float *dbias, const float *dout, const float *pre,
                       int64_t N, int64_t F) {
    return colsum_blocks(dbias, dinp, dout, pre, N, F);
}
