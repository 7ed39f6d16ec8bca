/* LayerNorm (biased variance), forward and backward (and the backward fused
 * with the residual stream's add, layernorm_backward_add).
 * Oracle: the functions of the same names in codette_np/kernels/ref.py.
 *
 * Rows are independent: threads split rows (static partition). The column
 * sums of the backward (dweight, dbias) use a fixed number of row blocks,
 * each summed in row order into its own partial, then the partials are added
 * in block order. The blocks depend on N only, so every output element gets
 * the same arithmetic whatever the thread count. */
#include <stdlib.h>
#include <math.h>
#include "codette.h"
#include "simd.h"

#define LN_BLOCKS 32  /* row blocks of the dweight/dbias reduction */

/* Row reductions with four vector accumulators, so the adds do not wait
 * on each other. */

/* sum of x (C,) */
static inline float row_sum(const float *x, int64_t C) {
    vf_t a0 = vf_set1(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c + 4 * VF <= C; c += 4 * VF) {
        a0 = vf_add(a0, vf_load(x + c));
        a1 = vf_add(a1, vf_load(x + c + VF));
        a2 = vf_add(a2, vf_load(x + c + 2 * VF));
        a3 = vf_add(a3, vf_load(x + c + 3 * VF));
    }
    for (; c + VF <= C; c += VF) a0 = vf_add(a0, vf_load(x + c));
    float s = vf_hsum(vf_add(vf_add(a0, a1), vf_add(a2, a3)));
    for (; c < C; c++) s += x[c];
    return s;
}

/* sum of (x - m)^2 over x (C,) */
static inline float row_sumsq_centered(const float *x, float m, int64_t C) {
    const vf_t vm = vf_set1(m);
    vf_t a0 = vf_set1(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c + 4 * VF <= C; c += 4 * VF) {
        vf_t d0 = vf_sub(vf_load(x + c), vm), d1 = vf_sub(vf_load(x + c + VF), vm);
        vf_t d2 = vf_sub(vf_load(x + c + 2 * VF), vm), d3 = vf_sub(vf_load(x + c + 3 * VF), vm);
        a0 = vf_fma(d0, d0, a0);
        a1 = vf_fma(d1, d1, a1);
        a2 = vf_fma(d2, d2, a2);
        a3 = vf_fma(d3, d3, a3);
    }
    for (; c + VF <= C; c += VF) {
        vf_t d = vf_sub(vf_load(x + c), vm);
        a0 = vf_fma(d, d, a0);
    }
    float s = vf_hsum(vf_add(vf_add(a0, a1), vf_add(a2, a3)));
    for (; c < C; c++) s += (x[c] - m) * (x[c] - m);
    return s;
}

/* out (N, C), mean (N,), rstd (N,) <- inp (N, C), weight (C,), bias (C,) */
void layernorm_forward(float *out, float *mean, float *rstd,
                       const float *inp, const float *weight, const float *bias,
                       float eps, int64_t N, int64_t C) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * C;  /* (C,) */
        float *y = out + n * C;        /* (C,) */
        const float m = row_sum(x, C) / (float)C;
        /* variance of the centered row (two passes: no cancellation) */
        const float r = 1.0f / sqrtf(row_sumsq_centered(x, m, C) / (float)C + eps);
        /* normalize, scale, shift */
        const vf_t vm = vf_set1(m), vr = vf_set1(r);
        int64_t c = 0;
        for (; c + VF <= C; c += VF) {
            vf_t xh = vf_mul(vf_sub(vf_load(x + c), vm), vr);
            vf_store(y + c, vf_fma(xh, vf_load(weight + c), vf_load(bias + c)));
        }
        for (; c < C; c++) y[c] = (x[c] - m) * r * weight[c] + bias[c];
        mean[n] = m;
        rstd[n] = r;
    }
}

/* The backward of both public kernels: dweight (C,), dbias (C,) written;
 * the input gradient written to dx_all (N, C) (add = 0) or added to it (add = 1:
 * dx_all += dinp, rounded exactly as dinp written then added by residual_backward).
 * Returns -1 if scratch allocation fails. */
static int ln_backward(float *dx_all, int add, float *dweight, float *dbias,
                       const float *dout, const float *inp, const float *weight,
                       const float *mean, const float *rstd, int64_t N, int64_t C) {
    int64_t nblk = N < LN_BLOCKS ? N : LN_BLOCKS;
    /* part (nblk, 2, C): per block, the partial dbias then the partial dweight */
    float *part = (float *)malloc(sizeof(float) * (size_t)((nblk > 0 ? nblk : 1) * 2 * C));
    if (part == NULL) return -1;

    #pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nblk; b++) {
        float *pdb = part + b * 2 * C;  /* (C,) */
        float *pdw = pdb + C;           /* (C,) */
        for (int64_t c = 0; c < 2 * C; c++) pdb[c] = 0.0f;
        int64_t n0 = b * N / nblk, n1 = (b + 1) * N / nblk;
        for (int64_t n = n0; n < n1; n++) {
            const float *x = inp + n * C, *dy = dout + n * C;  /* (C,) */
            float *dx = dx_all + n * C;                        /* (C,) */
            const float m = mean[n], r = rstd[n];
            const vf_t vm = vf_set1(m), vr = vf_set1(r);
            /* pass 1: the row means of g and g*xhat; the column partials */
            vf_t ag = vf_set1(0.0f), agx = vf_set1(0.0f);
            int64_t c = 0;
            for (; c + VF <= C; c += VF) {
                vf_t d = vf_load(dy + c);
                vf_t xh = vf_mul(vf_sub(vf_load(x + c), vm), vr);
                vf_t g = vf_mul(d, vf_load(weight + c));
                ag = vf_add(ag, g);
                agx = vf_fma(g, xh, agx);
                vf_store(pdb + c, vf_add(vf_load(pdb + c), d));
                vf_store(pdw + c, vf_fma(d, xh, vf_load(pdw + c)));
            }
            float sg = vf_hsum(ag), sgx = vf_hsum(agx);
            for (; c < C; c++) {
                float xh = (x[c] - m) * r, g = dy[c] * weight[c];
                sg += g;
                sgx += g * xh;
                pdb[c] += dy[c];
                pdw[c] += dy[c] * xh;
            }
            const float mg = sg / (float)C, mgx = sgx / (float)C;
            /* pass 2: dinp = rstd * (g - mean(g) - xhat * mean(g*xhat)) */
            const vf_t vmg = vf_set1(mg), vmgx = vf_set1(mgx);
            for (c = 0; c + VF <= C; c += VF) {
                vf_t xh = vf_mul(vf_sub(vf_load(x + c), vm), vr);
                vf_t g = vf_mul(vf_load(dy + c), vf_load(weight + c));
                vf_t t = vf_sub(vf_sub(g, vmg), vf_mul(xh, vmgx));
                vf_t d = vf_mul(vr, t);
                vf_store(dx + c, add ? vf_add(vf_load(dx + c), d) : d);
            }
            for (; c < C; c++) {
                float xh = (x[c] - m) * r, g = dy[c] * weight[c];
                float d = r * ((g - mg) - xh * mgx);
                dx[c] = add ? dx[c] + d : d;
            }
        }
    }

    /* add the block partials in block order */
    #pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; c++) {
        float db = 0.0f, dw = 0.0f;
        for (int64_t b = 0; b < nblk; b++) {
            db += part[b * 2 * C + c];
            dw += part[b * 2 * C + C + c];
        }
        dbias[c] = db;
        dweight[c] = dw;
    }
    free(part);
    return 0;
}

/* dinp (N, C), dweight (C,), dbias (C,) <- dout (N, C), inp (N, C),
 * weight (C,), mean (N,), rstd (N,). Returns -1 if scratch allocation fails. */
int layernorm_backward(float *dinp, float *dweight, float *dbias,
                       const float *dout, const float *inp, const float *weight,
                       const float *mean, const float *rstd, int64_t N, int64_t C) {
    return ln_backward(dinp, 0, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

/* dresid (N, C) += dinp; dweight (C,), dbias (C,) written; inputs as in
 * layernorm_backward. Returns -1 if scratch allocation fails. */
int layernorm_backward_add(float *dresid, float *dweight, float *dbias,
                           const float *dout, const float *inp, const float *weight,
                           const float *mean, const float *rstd, int64_t N, int64_t C) {
    return ln_backward(dresid, 1, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}
