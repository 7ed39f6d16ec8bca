/* Cross-entropy fused with softmax: loss and dlogits in one visit per row.
 * Oracle: crossentropy_forward_backward in codette_np/kernels/ref.py.
 *
 * Per row: the max (one read from memory), then e = exp(x - max) written
 * into the dlogits row with its sum in double, then the scaling; the row
 * (V floats) stays in cache between the three steps. Threads split rows. */
#include <math.h>
#include <string.h>
#include "codette.h"
#include "simd.h"

/* losses (R,), dlogits (R, V) <- logits (R, V), targets (R,); dlogits may alias logits */
void crossentropy_forward_backward(float *losses, float *dlogits, const float *logits,
                                   const int32_t *targets, float dscale,
                                   int64_t R, int64_t V) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *x = logits + r * V;  /* (V,) */
        float *d = dlogits + r * V;       /* (V,) */
        const int64_t t = targets[r];
        if (t < 0) {  /* ignored position */
            losses[r] = 0.0f;
            memset(d, 0, sizeof(float) * (size_t)V);
            continue;
        }
        /* max (a NaN anywhere makes the sum below NaN, as in the reference) */
        float m = x[0];
        int64_t i = 0;
        if (V >= VF) {
            vf_t vm = vf_load(x);
            for (i = VF; i + VF <= V; i += VF) vm = vf_max(vm, vf_load(x + i));
            m = vf_hmax(vm);
        }
        for (; i < V; i++) m = x[i] > m ? x[i] : m;
        const float xt = x[t];  /* read before d overwrites an aliased row */
        const double sum = exp_shifted_sum(d, x, m, V);
        losses[r] = (float)(((double)m + log(sum)) - (double)xt);
        /* d = (e / sum - onehot) * dscale */
        const double et = (double)d[t];
        const vf_t k = vf_set1((float)((double)dscale / sum));
        for (i = 0; i + VF <= V; i += VF) vf_store(d + i, vf_mul(vf_load(d + i), k));
        for (; i < V; i++) d[i] *= (float)((double)dscale / sum);
        d[t] = (float)((et / sum - 1.0) * (double)dscale);
    }
}
