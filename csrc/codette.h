/* codette_np C kernels: every prototype, in one place.
 *
 * This file is also the cffi cdef (csrc/build_ffi.py strips the preprocessor
 * lines), so it holds plain prototypes only.
 *
 * Argument order for all kernels: outputs, inputs, weights, sizes/scalars.
 * Dimensions: B batch, T time, C d_model, NH heads, hs head_dim, F d_ff,
 * V vocab, N = B*T rows, P = number of parameters. All float buffers are
 * float32, row-major. The gradient rule is the one stated at the top of
 * codette_np/kernels/ref.py.
 */
#ifndef CODETTE_H
#define CODETTE_H
#include <stdint.h>
#include <stddef.h>

/* ---- optimizer (adamw.c) ---- */
/* params, grads, m, v: (P,); decay_mask: (P,) 1 where weight decay applies.
 * g = grads * grad_scale; step counts from 1. */
void adamw_step(float *params, float *m, float *v,
                const float *grads, const uint8_t *decay_mask,
                float lr, float beta1, float beta2, float eps, float weight_decay,
                int64_t step, float grad_scale, int64_t P);
/* sum of squares of x (n,), accumulated in double */
double grad_norm_sq(const float *x, int64_t n);

/* ---- element-wise and row kernels (embedding.c, layernorm.c, ops.c, crossentropy.c) ---- */

/* ---- end element-wise and row kernels ---- */

/* ---- attention (attention.c) ---- */

/* ---- end attention ---- */

/* ---- build information ---- */
int codette_num_threads(void);
const char *codette_build_info(void);

#endif
