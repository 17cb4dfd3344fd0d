/*
 * The tutorial's model, one LSTM followed by one Dense, ported to C99 by hand from the equations:
 *
 *   z   = x_t W + h_tm1 U + b                      (4h,) in gate blocks i, f, c, o
 *   i   = recurrent_activation(z_i)   f = recurrent_activation(z_f)   o = recurrent_activation(z_o)
 *   c_t = f * c_tm1 + i * activation(z_c)          h_t = o * activation(c_t)       h_0 = c_0 = 0
 *   y   = dense_activation(h_T Wout + bout)
 *
 * weights.h comes from `lstm-parity dump MODEL --format c`, vectors.h from `lstm-parity vectors
 * MODEL INPUT --format c`. The program runs every golden input, compares its outputs with the golden
 * reference outputs, and writes
 *   OUT.npy     its outputs, one row per sample         -> lstm-parity check ... --expected OUT.npy
 *   TRACE.json  every gate of sample VECTORS_SAMPLE     -> lstm-parity check ... --expected-trace TRACE.json
 * Exit 0 when the outputs are within VECTORS_OUTPUT_ATOL of the golden ones, 1 when not, 2 on an error.
 *
 * -DSWAP_IF builds a classic porting bug: the input and forget gates' columns swapped.
 */
#include <math.h>
#include <stdio.h>

#include "port_io.h"
#include "vectors.h"
#include "weights.h"

#ifndef TUTORIAL_UNITS
#error "weights.h has no TUTORIAL_* names: this port is for a model that is one LSTM followed by one Dense"
#endif
#if VECTORS_X0_DIM2 != TUTORIAL_INPUT_DIM || VECTORS_Y0_DIM1 != TUTORIAL_OUTPUT_DIM
#error "vectors.h and weights.h describe different models"
#endif

#define X_DIM TUTORIAL_INPUT_DIM
#define H_DIM TUTORIAL_UNITS
#define Y_DIM TUTORIAL_OUTPUT_DIM
#define SAMPLES VECTORS_X0_DIM0
#define STEPS VECTORS_X0_DIM1

#ifdef SWAP_IF
#define GATE_I TUTORIAL_GATE_F /* the bug: gate i read from f's columns, f from i's */
#define GATE_F TUTORIAL_GATE_I
#else
#define GATE_I TUTORIAL_GATE_I
#define GATE_F TUTORIAL_GATE_F
#endif
#define GATE_C TUTORIAL_GATE_C
#define GATE_O TUTORIAL_GATE_O

/* The activations this port implements; the header's codes say which one, and which Keras's. */
#define SUPPORTED(code)                                                                                   \
    ((code) == LP_ACT_LINEAR || (code) == LP_ACT_TANH || (code) == LP_ACT_SIGMOID || (code) == LP_ACT_RELU || \
     (code) == LP_ACT_HARD_SIGMOID_KERAS2 || (code) == LP_ACT_HARD_SIGMOID_KERAS3)
#if !SUPPORTED(TUTORIAL_ACTIVATION) || !SUPPORTED(TUTORIAL_RECURRENT_ACTIVATION) || \
    !SUPPORTED(TUTORIAL_DENSE_ACTIVATION)
#error "the model uses an activation this port does not implement (see the codes in weights.h)"
#endif

static float clip(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

static float activate(int code, float x)
{
    switch (code) {
    case LP_ACT_TANH: return tanhf(x);
    case LP_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case LP_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case LP_ACT_HARD_SIGMOID_KERAS2: return clip(0.2f * x + 0.5f, 0.0f, 1.0f); /* Keras 1/2 */
    case LP_ACT_HARD_SIGMOID_KERAS3: return clip(x + 3.0f, 0.0f, 6.0f) / 6.0f; /* Keras 3 */
    default: return x;                                                        /* linear */
    }
}

/* Every gate of one sample at every timestep, under the keys of `lstm-parity trace`. */
struct trace {
    float i[STEPS][H_DIM], f[STEPS][H_DIM], c_hat[STEPS][H_DIM], o[STEPS][H_DIM], c[STEPS][H_DIM], h[STEPS][H_DIM];
};

/* One timestep: updates h and c in place; records the gates in row t of `tr` unless it is NULL. */
static void lstm_step(const float x_t[X_DIM], float h[H_DIM], float c[H_DIM], struct trace *tr, int t)
{
    float z[4 * H_DIM];
    for (int j = 0; j < 4 * H_DIM; j++) {
        float sum = TUTORIAL_B[j];
        for (int k = 0; k < X_DIM; k++) sum += x_t[k] * TUTORIAL_W[k][j];
        for (int k = 0; k < H_DIM; k++) sum += h[k] * TUTORIAL_U[k][j]; /* h is still h_tm1 here */
        z[j] = sum;
    }
    for (int u = 0; u < H_DIM; u++) {
        float i = activate(TUTORIAL_RECURRENT_ACTIVATION, z[GATE_I + u]);
        float f = activate(TUTORIAL_RECURRENT_ACTIVATION, z[GATE_F + u]);
        float c_hat = activate(TUTORIAL_ACTIVATION, z[GATE_C + u]);
        float o = activate(TUTORIAL_RECURRENT_ACTIVATION, z[GATE_O + u]);
        c[u] = f * c[u] + i * c_hat;
        h[u] = o * activate(TUTORIAL_ACTIVATION, c[u]);
        if (tr) {
            tr->i[t][u] = i, tr->f[t][u] = f, tr->c_hat[t][u] = c_hat, tr->o[t][u] = o;
            tr->c[t][u] = c[u], tr->h[t][u] = h[u];
        }
    }
}

static void dense(const float h[H_DIM], float y[Y_DIM])
{
    for (int j = 0; j < Y_DIM; j++) {
        float sum = TUTORIAL_BOUT[j];
        for (int k = 0; k < H_DIM; k++) sum += h[k] * TUTORIAL_WOUT[k][j];
        y[j] = activate(TUTORIAL_DENSE_ACTIVATION, sum);
    }
}

int main(int argc, char **argv)
{
    static float y[SAMPLES][Y_DIM];
    static struct trace tr;
    float worst = 0.0f;
    if (argc != 3) {
        fprintf(stderr, "usage: %s OUT.npy TRACE.json\n", argv[0]);
        return 2;
    }
    for (int s = 0; s < SAMPLES; s++) {
        float h[H_DIM] = {0}, c[H_DIM] = {0};
        for (int t = 0; t < STEPS; t++) lstm_step(vectors_x0[s][t], h, c, s == VECTORS_SAMPLE ? &tr : NULL, t);
        dense(h, y[s]);
        for (int j = 0; j < Y_DIM; j++) worst = fmaxf(worst, fabsf(y[s][j] - (float)vectors_y0[s][j]));
    }
    if (write_npy(argv[1], &y[0][0], SAMPLES, Y_DIM) != 0) return 2;
    const struct named_rows keys[] = {
        {TUTORIAL_LSTM_NAME "/output0", tr.h[STEPS - 1], 0, H_DIM}, /* the LSTM's output: h_T */
        {TUTORIAL_LSTM_NAME "/i", &tr.i[0][0], STEPS, H_DIM},
        {TUTORIAL_LSTM_NAME "/f", &tr.f[0][0], STEPS, H_DIM},
        {TUTORIAL_LSTM_NAME "/c_hat", &tr.c_hat[0][0], STEPS, H_DIM},
        {TUTORIAL_LSTM_NAME "/o", &tr.o[0][0], STEPS, H_DIM},
        {TUTORIAL_LSTM_NAME "/c", &tr.c[0][0], STEPS, H_DIM},
        {TUTORIAL_LSTM_NAME "/h", &tr.h[0][0], STEPS, H_DIM},
        {TUTORIAL_DENSE_NAME "/output0", y[VECTORS_SAMPLE], 0, Y_DIM},
    };
    if (write_trace_json(argv[2], VECTORS_SAMPLE, keys, sizeof keys / sizeof keys[0]) != 0) return 2;
    printf("max abs diff from the golden outputs: %.3g (suggested atol %g): %s\n", worst, VECTORS_OUTPUT_ATOL,
           worst <= VECTORS_OUTPUT_ATOL ? "ok" : "FAIL");
    return worst <= VECTORS_OUTPUT_ATOL ? 0 : 1;
}
