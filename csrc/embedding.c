/* Token embedding lookup and its scatter-add backward.
 * Oracle: embedding_forward / embedding_backward in codette_np/kernels/ref.py. */
#include <string.h>
#include "codette.h"
#include "simd.h"

/* out (N, C) = wte[tokens]; tokens (N,); wte (V, C) */
void embedding_forward(float *out, const int32_t *tokens, const float *wte,
                       int64_t N, int64_t C) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++)
        memcpy(out + n * C, wte + (int64_t)tokens[n] * C, sizeof(float) * (size_t)C);
}

/* Columns per work item of the backward scatter (a multiple of every VF). */
#define EMB_COLS 64

/* dwte (V, C) += dout (N, C) rows scattered at tokens (N,).
 * Tokens repeat, so threads split the columns, not the tokens: every thread
 * walks all tokens in order over its own column block. Each element of dwte
 * then gets its additions in token order, whatever the thread count (the
 * same order as np.add.at). */
void embedding_backward(float *dwte, const float *dout, const int32_t *tokens,
                        int64_t N, int64_t V, int64_t C) {
    (void)V;
    int64_t nblk = (C + EMB_COLS - 1) / EMB_COLS;
    #pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nblk; b++) {
        int64_t c0 = b * EMB_COLS;
        int64_t w = C - c0 < EMB_COLS ? C - c0 : EMB_COLS;
        for (int64_t n = 0; n < N; n++) {
            float *dst = dwte + (int64_t)tokens[n] * C + c0;  /* (w,) */
            const float *src = dout + n * C + c0;             /* (w,) */
            int64_t c = 0;
            for (; c + VF <= w; c += VF)
                vf_store(dst + c, vf_add(vf_load(dst + c), vf_load(src + c)));
            for (; c < w; c++) dst[c] += src[c];
        }
    }
}
