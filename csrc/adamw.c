/* The fused AdamW update and the global gradient norm: one pass each over
 * the flat buffers. Oracle: adamw_step / grad_norm_sq in
 * codette_np/kernels/ref.py. */
#include <math.h>
#include <stdlib.h>
#include "codette.h"
#include "simd.h"

/* params, m, v (P,) updated in place; grads (P,); decay_mask (P,) */
void adamw_step(float *params, float *m, float *v,
                const float *grads, const uint8_t *decay_mask,
                float lr, float beta1, float beta2, float eps, float weight_decay,
                int64_t step, float grad_scale, int64_t P) {
    const float bc1 = (float)(1.0 - pow((double)beta1, (double)step));
    const float bc2 = (float)(1.0 - pow((double)beta2, (double)step));
    const float one_m_b1 = 1.0f - beta1, one_m_b2 = 1.0f - beta2;
    const float lr_wd = lr * weight_decay;
    /* Element-wise and independent: a static partition gives the same result
     * for any thread count. Written scalar so the compiler vectorizes it with
     * the exact operation order of the reference. */
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < P; i++) {
        float g = grads[i] * grad_scale;
        float mi = beta1 * m[i] + one_m_b1 * g;
        float vi = beta2 * v[i] + one_m_b2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        float p = params[i];
        p = p - lr_wd * p * (float)decay_mask[i];  /* branch-free, so the loop vectorizes */
        float mhat = mi / bc1;
        float vhat = vi / bc2;
        params[i] = p - lr * mhat / (sqrtf(vhat) + eps);
    }
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
