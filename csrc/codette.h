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

enum { Q8_BLOCK = 256 };  /* elements per 8-bit block (one absmax each) */

/* ---- optimizer (adamw.c) ---- */
/* One tensor: params, grads, m, v (n,); decay 1 where decoupled weight decay
 * applies (matrices). g = grads * grad_scale; step counts from 1. */
void adamw_step(float *params, float *m, float *v,
                const float *grads, int decay,
                float lr, float beta1, float beta2, float eps, float weight_decay,
                int64_t step, float grad_scale, int64_t n);
/* As adamw_step with m, v stored as bf16 (n,), rounded stochastically with the
 * bits of (seed, step, offset + i): offset is the tensor's place in the flat buffer. */
void adamw_step_bf16(float *params, uint16_t *m, uint16_t *v,
                     const float *grads, int decay,
                     float lr, float beta1, float beta2, float eps, float weight_decay,
                     int64_t step, float grad_scale, uint64_t seed, int64_t offset, int64_t n);
/* As adamw_step_bf16 with m, v as 8-bit codes (n,) scaled per block of 256 by
 * m_absmax, v_absmax (ceil(n / 256),) */
void adamw_step_q8(float *params, uint8_t *m, uint8_t *v, float *m_absmax, float *v_absmax,
                   const float *grads, int decay,
                   float lr, float beta1, float beta2, float eps, float weight_decay,
                   int64_t step, float grad_scale, uint64_t seed, int64_t offset, int64_t n);
/* As adamw_step_q8 with the weights as bf16 bits (n,): decoded, updated and
 * stored back rounded stochastically (stream 2), in one pass (12 bytes per
 * parameter); the same bits as bf16_to_f32 + adamw_step_q8 + f32_to_bf16_sr */
void adamw_step_q8_bf16w(uint16_t *params, uint8_t *m, uint8_t *v, float *m_absmax, float *v_absmax,
                         const float *grads, int decay,
                         float lr, float beta1, float beta2, float eps, float weight_decay,
                         int64_t step, float grad_scale, uint64_t seed, int64_t offset, int64_t n);
/* bf16 weights: bits (n,) -> float32 (n,); float32 (n,) -> bits rounded
 * stochastically with the bits of (seed, step, stream 2, offset + i) */
void bf16_to_f32(float *out, const uint16_t *h, int64_t n);
void f32_to_bf16_sr(uint16_t *out, const float *x, uint64_t seed, int64_t step, int64_t offset,
                    int64_t n);
/* the codes' values (for tests): magnitude / absmax with sign for m */
float q8_decode_m(uint8_t c);
float q8_decode_v(uint8_t c);
uint64_t sr_key(uint64_t seed, int64_t step, int stream);
/* *out = sum of squares of x (n,), accumulated in double; returns 0, or -1 when malloc failed */
int grad_norm_sq(const float *x, int64_t n, double *out);

/* ---- element-wise and row kernels (embedding.c, layernorm.c, ops.c, crossentropy.c) ---- */

/* Kernels that need scratch memory return 0, or -1 when malloc failed.
 * Output gradients are written (=), except embedding_backward and the
 * dresid of layernorm_backward_add (they add). */

/* embedding.c */
/* out (N, C) = wte[tokens]; tokens (N,) in [0, V); wte (V, C) */
void embedding_forward(float *out, const int32_t *tokens, const float *wte,
                       int64_t N, int64_t C);
/* dwte (V, C) += scatter of dout (N, C) rows at tokens (N,) */
void embedding_backward(float *dwte, const float *dout, const int32_t *tokens,
                        int64_t N, int64_t V, int64_t C);

/* layernorm.c */
/* out (N, C), mean (N,), rstd (N,) <- inp (N, C), weight (C,), bias (C,) */
void layernorm_forward(float *out, float *mean, float *rstd,
                       const float *inp, const float *weight, const float *bias,
                       float eps, int64_t N, int64_t C);
/* dinp (N, C), dweight (C,), dbias (C,) <- dout (N, C), inp (N, C),
 * weight (C,), mean (N,), rstd (N,) */
int layernorm_backward(float *dinp, float *dweight, float *dbias,
                       const float *dout, const float *inp, const float *weight,
                       const float *mean, const float *rstd, int64_t N, int64_t C);
/* layernorm_backward fused with residual_backward: dresid (N, C) += dinp;
 * dweight (C,), dbias (C,) written; same inputs as layernorm_backward */
int layernorm_backward_add(float *dresid, float *dweight, float *dbias,
                           const float *dout, const float *inp, const float *weight,
                           const float *mean, const float *rstd, int64_t N, int64_t C);

/* ops.c */
/* out (N, O) += bias (O,) */
void bias_forward(float *out, const float *bias, int64_t N, int64_t O);
/* dbias (O,) = column sums of dout (N, O) */
int bias_backward(float *dbias, const float *dout, int64_t N, int64_t O);
/* out (N, C) = resid (N, C) + branch (N, C) + bias (C,); out may alias branch */
void residual_forward(float *out, const float *resid, const float *branch,
                      const float *bias, int64_t N, int64_t C);
/* dresid (n,) += dbranch (n,) */
void residual_backward(float *dresid, const float *dbranch, int64_t n);
/* out, inp: (B, T, NH, hs) with the last two dims contiguous; *_sb and *_st
 * are the element strides of their B and T dims; cos, sin (T, hs/2).
 * out may be inp (same pointer and strides). */
void rope_forward(float *out, const float *inp, const float *cos, const float *sin,
                  int64_t B, int64_t T, int64_t NH, int64_t hs,
                  int64_t out_sb, int64_t out_st, int64_t inp_sb, int64_t inp_st);
/* dinp, dout: (B, T, NH, hs) strided as in rope_forward; dinp may be dout */
void rope_backward(float *dinp, const float *dout, const float *cos, const float *sin,
                   int64_t B, int64_t T, int64_t NH, int64_t hs,
                   int64_t dinp_sb, int64_t dinp_st, int64_t dout_sb, int64_t dout_st);
/* out (n,) = gelu_tanh(inp (n,)) */
void gelu_forward(float *out, const float *inp, int64_t n);
/* dinp (n,) = dout (n,) * gelu_tanh'(inp (n,)) */
void gelu_backward(float *dinp, const float *dout, const float *inp, int64_t n);
/* bias_forward then gelu_forward in one pass: pre (N, F) += bias (F,) in place,
 * out (N, F) = gelu_tanh(pre); out must not overlap pre */
void bias_gelu_forward(float *out, float *pre, const float *bias, int64_t N, int64_t F);
/* gelu_backward then bias_backward in one pass: dinp (N, F) = dout (N, F) *
 * gelu_tanh'(pre (N, F)), dbias (F,) = column sums of dinp */
int gelu_bias_backward(float *dinp, float *dbias, const float *dout, const float *pre,
                       int64_t N, int64_t F);
/* y (n,) = exp(x (n,) - shift), returns the sum of y in double; y may alias x.
 * Shared with crossentropy.c. */
double exp_shifted_sum(float *y, const float *x, float shift, int64_t n);

/* crossentropy.c */
/* losses (R,), dlogits (R, V) <- logits (R, V), targets (R,) in [-1, V);
 * target -1: loss 0, zero gradient. dlogits may alias logits. */
void crossentropy_forward_backward(float *losses, float *dlogits, const float *logits,
                                   const int32_t *targets, float dscale,
                                   int64_t R, int64_t V);

/* ---- end element-wise and row kernels ---- */

/* ---- attention (attention.c) ---- */
/* Causal attention, scale 1/sqrt(hs). q, k, v, out, dout, dq, dk, dv are
 * (B, T, NH, hs) with hs contiguous and heads adjacent; *_st is the element
 * stride between rows t and t+1 of one head (3C for a q/k/v view of an
 * (N, 3C) buffer, C for out); batch b starts T*stride after batch b-1.
 * lse (B, NH, T) contiguous: per-row log-sum-exp of the scaled scores.
 * Return 0, or -1 when the per-thread scratch could not be allocated. */
/* out, lse <- q, k, v */
int attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                      int64_t B, int64_t T, int64_t NH, int64_t hs,
                      int64_t out_st, int64_t q_st, int64_t k_st, int64_t v_st);
/* dq, dk, dv (written, not added) <- dout, q, k, v, out, lse of the forward */
int attention_backward(float *dq, float *dk, float *dv,
                       const float *dout, const float *q, const float *k, const float *v,
                       const float *out, const float *lse,
                       int64_t B, int64_t T, int64_t NH, int64_t hs,
                       int64_t dq_st, int64_t dk_st, int64_t dv_st, int64_t dout_st,
                       int64_t q_st, int64_t k_st, int64_t v_st, int64_t out_st);
/* floats of scratch each thread allocates per call (backward != 0: backward) */
int64_t attention_scratch_floats(int64_t T, int64_t hs, int backward);

/* ---- end attention ---- */

/* ---- bf16 GEMM (gemm_bf16.c) ---- */
/* The micro-kernel paths; gemm_bf16_available() has bit p set when path p can run
 * here (CPUID, XCR0 and, for AMX, the OS's tile-data permission). */
enum { GEMM_SCALAR = 0, GEMM_AVX2 = 1, GEMM_AVX512 = 2, GEMM_AVX512BF16 = 3, GEMM_AMX = 4,
       GEMM_NEON = 5, GEMM_N_PATHS = 6 };
uint32_t gemm_bf16_available(void);
const char *gemm_bf16_path_name(int path);
/* why path cannot run here ("" when it can) */
const char *gemm_bf16_unavailable_reason(int path);
int gemm_bf16_best_path(void);
/* force a path (-1: the best available); -1 returned when it cannot run here */
int gemm_bf16_set_path(int path);
int gemm_bf16_current_path(void);
/* c (M, N) row stride ldc = [c +] A (M, K) . B (K, N), A(i, k) = a[i*sam + k*sak],
 * B(k, j) = b[k*sbk + j*sbn], bf16 bits; fp32 accumulation. 0, or 1 when malloc failed. */
int gemm_bf16(float *c, int64_t ldc, const uint16_t *a, int64_t sam, int64_t sak,
              const uint16_t *b, int64_t sbk, int64_t sbn, int64_t M, int64_t N, int64_t K,
              int accumulate);
/* float32 (n,) -> bf16 bits, rounded to nearest even */
void f32_to_bf16_rne(uint16_t *out, const float *x, int64_t n);
/* as f32_to_bf16_rne, the bits written over the first half of x's own bytes */
void f32_to_bf16_rne_in_place(float *x, int64_t n);

/* ---- build information ---- */
int codette_num_threads(void);
const char *codette_build_info(void);

#endif
