"""Arrays as C declarations whose literals read back bit-exactly, and the parts every generated header
shares: the include guard, the includes its arrays need, one block per array.

A float is written with the fewest decimal digits that identify it (at most 9 for float32, 17 for
float64) plus the `f` suffix for float, so a correctly rounding compiler (GCC, Clang, MSVC) turns each
literal back into the very same bits; tests compile the header and compare the bytes. NaN and the
infinities are written as <math.h>'s NAN and INFINITY (a NaN's sign and payload are not kept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .c_names import NameTable, comment_text, sanitize, short_hash

C_TYPES: dict[str, np.dtype] = {"float": np.dtype(np.float32), "double": np.dtype(np.float64)}
VALUES_PER_LINE = 6


def float_literal(value: float, c_type: str) -> str:
    """The shortest C literal of `value` rounded to `c_type` ("float" or "double") that reads back as
    the same number: "0.46983477f", "-1e-45f", "3.0", "-INFINITY", "NAN"."""
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INFINITY" if value > 0 else "-INFINITY"
    if c_type == "float":
        return str(np.float32(value)) + "f"  # numpy's shortest round-trip repr of the float32 value
    return repr(float(value))


def integer_literal(value: int) -> str:
    """An int32_t/int64_t initializer; INT64_MIN has no literal of its own, so it is written as an expression."""
    return "(-9223372036854775807 - 1)" if value == -(2**63) else str(value)


def element_type(array: np.ndarray, c_type: str) -> str:
    """The C element type for `array`: `c_type` for floats, int32_t/int64_t for integers and booleans."""
    if array.dtype.kind == "f":
        return c_type
    if array.dtype.kind in "iub" and array.dtype.itemsize <= 4 and array.dtype != np.uint32:
        return "int32_t"
    return "int64_t"


def initializer(array: np.ndarray, c_type: str, indent: str = "    ") -> str:
    """A brace initializer with one level of braces per axis (so -Wmissing-braces stays quiet), at most
    VALUES_PER_LINE numbers on a line. A 0-d array is written as one element."""
    if array.dtype.kind == "f":
        with np.errstate(over="ignore"):  # a float64 beyond float's range becomes an infinity, as in C
            values = array.astype(C_TYPES[c_type]).reshape(-1).tolist()
        words = [float_literal(v, c_type) for v in values]
    else:
        words = [integer_literal(int(v)) for v in array.reshape(-1).tolist()]
    shape = array.shape or (1,)
    return _nest(words, shape, indent)


def _nest(words: list[str], shape: tuple[int, ...], indent: str) -> str:
    if len(shape) == 1:
        lines = [", ".join(words[k : k + VALUES_PER_LINE]) for k in range(0, len(words), VALUES_PER_LINE)]
        if len(lines) <= 1:
            return "{" + (lines[0] if lines else "") + "}"
        return "{\n" + ",\n".join(indent + line for line in lines) + "\n" + indent[:-4] + "}"
    step = len(words) // shape[0] if shape[0] else 0
    rows = [_nest(words[k * step : (k + 1) * step], shape[1:], indent + "    ") for k in range(shape[0])]
    return "{\n" + ",\n".join(indent + row for row in rows) + "\n" + indent[:-4] + "}"


def declaration(identifier: str, dims: list[str], array: np.ndarray, c_type: str) -> str:
    """`static const float NAME[D0][D1] = {...};` with the dimensions spelled by `dims` (macro names)."""
    bounds = "".join(f"[{d}]" for d in dims) or "[1]"
    return f"static const {element_type(array, c_type)} {identifier}{bounds} = {initializer(array, c_type)};\n"


def needs_math_h(arrays: list[np.ndarray]) -> bool:
    """Does any float array hold NaN or an infinity (written as NAN/INFINITY from <math.h>)?"""
    return any(a.dtype.kind == "f" and a.size and not np.all(np.isfinite(a)) for a in arrays)


def needs_stdint_h(arrays: list[np.ndarray]) -> bool:
    """Does any array need int32_t/int64_t (from <stdint.h>)?"""
    return any(a.dtype.kind != "f" for a in arrays)


@dataclass
class CArray:
    """One declared array: its C name, the macros that spell its dimensions, the values, what it is."""

    identifier: str
    dims: list[str]
    values: np.ndarray
    what: str

    def lines(self, c_type: str) -> list[str]:
        """A comment saying what it is, a #define per dimension, the declaration; an array without
        elements gets its defines and a comment instead (C has no empty arrays)."""
        lines = [f"/* {comment_text(self.what)} */"]
        lines += [f"#define {dim} {size}" for dim, size in zip(self.dims, self.values.shape, strict=True)]
        if self.values.size == 0:
            lines.append("/* (no elements: C has no empty arrays, so none is declared) */")
        else:
            lines.append(declaration(self.identifier, self.dims, self.values, c_type).rstrip("\n"))
        return lines


def name_array(names: NameTable, head: str, tail: str, values: np.ndarray, what: str) -> CArray:
    """Claim the array `head + tail` (e.g. "lstm" + "_kernel") and its dimension macros
    `HEAD_TAIL_DIM0`, ... from `names`; a long head is the part that gets shortened."""
    identifier, used = names.claim_parts(head, tail)
    dims = [names.claim(head.upper(), f"{used.upper()}_DIM{axis}") for axis in range(values.ndim)]
    return CArray(identifier, dims, values, what)


def header_start(comment: list[str], guard: str, arrays: list[np.ndarray]) -> list[str]:
    """The opening lines of a header: `comment` as a block comment (made safe), the include guard, and
    <math.h> / <stdint.h> when the arrays need them."""
    lines = ["/*"] + [f" * {comment_text(line)}".rstrip() for line in comment] + [" */"]
    lines += [f"#ifndef {guard}", f"#define {guard}"]
    includes = (["#include <math.h> /* NAN, INFINITY */"] if needs_math_h(arrays) else []) + (
        ["#include <stdint.h> /* int32_t, int64_t */"] if needs_stdint_h(arrays) else []
    )
    return lines + ([""] + includes if includes else [])


def header_end(guard: str) -> list[str]:
    """The closing lines of a header opened by `header_start`."""
    return ["", f"#endif /* {guard} */", ""]


def guard_name(names: NameTable, source_name: str, sha256: str, kind: str) -> str:
    """`LSTM_PARITY_<FILE>_<HASH>_<KIND>_H`: the file's base name and the first 8 hex digits of its
    SHA-256 (of the name when unknown), so headers of two models that share a file name can meet."""
    digest = (sha256[:8] or short_hash(source_name)).upper()
    return names.claim(f"LSTM_PARITY_{sanitize(source_name, 'MODEL', limit=63).upper()}", f"_{digest}_{kind}_H")
