/* A stand-alone check of csrc/gemm_bf16.c, for builds the Python tests cannot load (another
 * architecture under an emulator): every path that can run, on edge shapes and the three
 * memory orders, against a double-precision oracle with the bound of tests/test_gemm_bf16.py,
 * |C - C64| <= 2 K 2^-24 sum_k |a||b|. Prints one line per path; exit status 1 on a failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "codette.h"

static float f(uint16_t h) {
    union { uint32_t u; float f; } x = {(uint32_t)h << 16};
    return x.f;
}

static uint64_t state = 88172645463325252ull;
static uint16_t random_bf16(void) {  /* xorshift; values about N(0, 1)-sized, both signs */
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    float v = ((double)(state >> 11) / 9007199254740992.0 - 0.5) * 4.0;
    uint16_t out;
    float fv = v;
    f32_to_bf16_rne(&out, &fv, 1);
    return out;
}

static int check(int M, int N, int K, int ta, int tb) {
    uint16_t *a = malloc(sizeof *a * M * K), *b = malloc(sizeof *b * K * N);
    float *c = malloc(sizeof *c * M * N);
    for (int i = 0; i < M * K; i++) a[i] = random_bf16();
    for (int i = 0; i < K * N; i++) b[i] = random_bf16();
    /* logical A(i, k) = a[i*sam + k*sak]: row-major storage, or column-major (transposed) */
    int64_t sam = ta ? 1 : K, sak = ta ? M : 1, sbk = tb ? 1 : N, sbn = tb ? K : 1;
    for (int i = 0; i < M * N; i++) c[i] = NAN;
    int bad = gemm_bf16(c, N, a, sam, sak, b, sbk, sbn, M, N, K, 0) != 0;
    for (int i = 0; i < M && !bad; i++)
        for (int j = 0; j < N; j++) {
            double ref = 0, absref = 0;
            for (int k = 0; k < K; k++) {
                double p = (double)f(a[i * sam + k * sak]) * f(b[k * sbk + j * sbn]);
                ref += p, absref += fabs(p);
            }
            if (!(fabs(c[i * N + j] - ref) <= 2.0 * K * ldexp(1.0, -24) * absref)) {
                printf("  M=%d N=%d K=%d ta=%d tb=%d: c[%d,%d] = %.9g, oracle %.9g\n", M, N, K, ta, tb, i, j,
                       c[i * N + j], ref);
                bad = 1;
                break;
            }
        }
    free(a), free(b), free(c);
    return bad;
}

int main(void) {
    static const int shapes[][3] = {{1, 1, 1}, {1, 33, 17}, {7, 5, 3}, {6, 16, 256}, {13, 33, 257},
                                    {65, 47, 513}, {3, 2051, 40}, {130, 97, 300}};
    uint32_t av = gemm_bf16_available();
    int failed = 0;
    for (int p = 0; p < GEMM_N_PATHS; p++) {
        if (!(av >> p & 1)) {
            printf("%s: not run (%s)\n", gemm_bf16_path_name(p), gemm_bf16_unavailable_reason(p));
            continue;
        }
        gemm_bf16_set_path(p);
        int bad = 0;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int t = 0; t < 3; t++) bad |= check(shapes[s][0], shapes[s][1], shapes[s][2], t == 2, t == 0);
        printf("%s: %s\n", gemm_bf16_path_name(p), bad ? "FAILED" : "ok");
        failed |= bad;
    }
    return failed;
}
