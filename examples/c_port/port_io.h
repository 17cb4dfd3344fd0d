/* Writing what `lstm-parity check` reads: outputs as .npy (--expected), a trace as JSON (--expected-trace). */
#ifndef PORT_IO_H
#define PORT_IO_H

#include <stddef.h>

/* A 2-D row-major float array (rows == 0: a 1-D array of cols values) under a trace key. */
struct named_rows {
    const char *key;
    const float *values;
    int rows, cols;
};

/* OUT.npy holding values as float32 of shape (rows, cols); 0 on success. */
int write_npy(const char *path, const float *values, int rows, int cols);

/* {"schema_version": 1, "sample": K, "values": {key: nested lists, ...}}; 0 on success. Numbers have 9
 * significant digits (exact for float); NaN and infinities are written NaN, Infinity, -Infinity, as
 * Python's json (and so `check --expected-trace`) reads them. */
int write_trace_json(const char *path, int sample, const struct named_rows *arrays, size_t count);

#endif
