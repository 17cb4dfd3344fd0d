"""What the two `.tflite` runners (LiteRT, TFLite Micro) share, once: the int8 input/output rule, the
refusal of Flex and custom ops, and the report's sentences about integer ports and state kept between
invocations. Imports no runtime.
"""

from __future__ import annotations

import numpy as np

from ..errors import KerasSideError
from ..reference.quiet import float_quiet
from .exports import Port

BUILTIN_ONLY = "export with builtin ops only"


@float_quiet
def quantize(x: np.ndarray, port: Port) -> np.ndarray:
    """Float `x` to the stored integer type of a quantized input: clip(round(x / scale + zero point));
    values beyond the float range (inf after the division) clip without a NumPy warning. Other inputs
    are returned as they are."""
    if port.quantization is None:
        return x
    scale, zero_point, stored = port.quantization
    info = np.iinfo(stored)
    return np.clip(np.rint(x / scale + zero_point), info.min, info.max).astype(stored)


def dequantize(y: np.ndarray, port: Port) -> np.ndarray:
    """A quantized output back to float32: (y - zero point) * scale; other outputs are copied."""
    if port.quantization is None:
        return np.array(y)
    scale, zero_point, _ = port.quantization
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


def refuse_unrunnable(path: str, census: dict, runtime: str, flex_advice: str) -> None:
    """Raise KerasSideError (exit 4) when the file needs Flex (TensorFlow) ops, which `runtime` lacks
    (`flex_advice`: what to export instead), or other custom ops."""
    if census["flex_ops"]:
        raise KerasSideError(
            f"{path}: needs TensorFlow Flex ops ({', '.join(census['flex_ops'])}) that {runtime} does not have; "
            f"{flex_advice}"
        )
    if census["custom_ops"]:
        raise KerasSideError(
            f"{path}: needs custom ops ({', '.join(census['custom_ops'])}) that {runtime} does not have; {BUILTIN_ONLY}"
        )


def port_notes(census: dict, reset_call: str) -> list[str]:
    """Report sentences: integer inputs/outputs (quantized with the file's scales), and variable tensors
    that keep state between invocations (`reset_call`: how an app resets them; the check's two passes
    never do, which is how a leak shows)."""
    notes = []
    if any("quantization" in entry for entry in census["inputs"] + census["outputs"]):
        notes.append("integer inputs/outputs: inputs quantized and outputs dequantized with the file's scales")
    if census["variable_tensors"]:
        count = len(census["variable_tensors"])
        notes.append(
            f"{count} variable tensors keep state between invocations; the check's two passes never reset them "
            f"({reset_call})"
        )
    return notes
