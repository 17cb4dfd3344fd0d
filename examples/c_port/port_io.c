/* The file formats of port_io.h: the .npy header (format version 1.0) and the trace JSON. */
#include "port_io.h"

#include <math.h>
#include <stdio.h>

static int host_is_little_endian(void)
{
    const unsigned one = 1;
    return *(const unsigned char *)&one == 1;
}

int write_npy(const char *path, const float *values, int rows, int cols)
{
    char header[128];
    int length = snprintf(header, sizeof header, "{'descr': '%cf4', 'fortran_order': False, 'shape': (%d, %d), }",
                          host_is_little_endian() ? '<' : '>', rows, cols);
    while ((10 + length + 1) % 64 != 0) header[length++] = ' '; /* magic + version + length + header + \n */
    header[length++] = '\n';
    FILE *file = fopen(path, "wb");
    if (!file) {
        perror(path);
        return -1;
    }
    const unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, length & 0xff, (length >> 8) & 0xff};
    fwrite(preamble, 1, sizeof preamble, file);
    fwrite(header, 1, (size_t)length, file);
    fwrite(values, sizeof(float), (size_t)rows * (size_t)cols, file);
    return fclose(file) == 0 ? 0 : -1;
}

static void write_json_string(FILE *file, const char *text)
{
    fputc('"', file);
    for (; *text; text++) {
        if (*text == '"' || *text == '\\') fputc('\\', file);
        if ((unsigned char)*text < 0x20)
            fprintf(file, "\\u%04x", (unsigned char)*text);
        else
            fputc(*text, file);
    }
    fputc('"', file);
}

/* One number as JSON: 9 significant digits read back as the same float; NaN and the infinities are spelled
 * as Python's json reads them (strict JSON has no word for them), so `check` still names the gate. */
static void write_number(FILE *file, float value)
{
    if (isnan(value))
        fputs("NaN", file);
    else if (isinf(value))
        fputs(value > 0 ? "Infinity" : "-Infinity", file);
    else
        fprintf(file, "%.9g", value);
}

static void write_row(FILE *file, const float *values, int count)
{
    fputc('[', file);
    for (int k = 0; k < count; k++) {
        fputs(k ? ", " : "", file);
        write_number(file, values[k]);
    }
    fputc(']', file);
}

int write_trace_json(const char *path, int sample, const struct named_rows *arrays, size_t count)
{
    FILE *file = fopen(path, "w");
    if (!file) {
        perror(path);
        return -1;
    }
    fprintf(file, "{\"schema_version\": 1, \"sample\": %d, \"values\": {", sample);
    for (size_t n = 0; n < count; n++) {
        fputs(n ? ",\n  " : "\n  ", file);
        write_json_string(file, arrays[n].key);
        fputs(": ", file);
        if (arrays[n].rows == 0) {
            write_row(file, arrays[n].values, arrays[n].cols);
            continue;
        }
        fputc('[', file);
        for (int r = 0; r < arrays[n].rows; r++) {
            fputs(r ? ", " : "", file);
            write_row(file, arrays[n].values + (size_t)r * (size_t)arrays[n].cols, arrays[n].cols);
        }
        fputc(']', file);
    }
    fputs("\n}}\n", file);
    return fclose(file) == 0 ? 0 : -1;
}
