"""What `export` is asked for: the target format (from OUT's extension) and the runtime that proves it
(`--target`), how to quantize, which strategy, fixed shapes, and the proof's settings. Plain data; nothing
here converts anything."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..compare import Tolerance
from ..errors import BadInputError

FORMATS = {".onnx": "onnx", ".tflite": "tflite"}
QUANTIZE = ("none", "float16", "dynamic", "int8")
STRATEGIES = ("auto", "unrolled", "fused", "loop")
# --target: the runtime the file is made for and proven in -> (the format it takes, its name in reports)
TARGETS = {"onnxruntime": ("onnx", "ONNX Runtime"), "litert": ("tflite", "LiteRT"), "tflm": ("tflite", "TFLite Micro")}
DEFAULT_TARGET = {"onnx": "onnxruntime", "tflite": "litert"}  # a format's runtime when --target is not given
# The pass rule that fits each precision (profiles.py): quantized weights are judged on SNR, cosine, L2.
PROFILE_FOR_QUANTIZE = {"none": "float32", "float16": "float16", "dynamic": "int8", "int8": "int8"}
DEFAULT_OPSET = 17
FLOAT_SAMPLES, QUANTIZED_SAMPLES = 16, 256  # generated proof sequences by default


@dataclass(frozen=True)
class ExportOptions:
    """How to export and how to prove it.

    `quantize`: none, float16 (weights), dynamic (int8 weights, float activations) or int8 (weights and
    activations, calibrated on `calibration` inputs or on generated ones). `strategy`: auto, unrolled,
    fused or loop (strategy.py says what each means per format). `timesteps` / `batch_size` fix the time
    and batch axes where the model leaves them open (None: left open where the strategy allows).
    `target` is the runtime the file is made for and proven in (TARGETS; "" for the format's own,
    DEFAULT_TARGET). `opset` is the ONNX opset (ONNX only). The proof runs on `samples` generated
    sequences (None: 16, or 256 for a quantized export, whose worst case shows only over many rows, 1,000
    if it outputs class scores, so that top-1 agreement is judged) (`seed`, values in `value_range`) and
    on the user's INPUT if given, under `tolerance` for float32 exports."""

    quantize: str = "none"
    strategy: str = "auto"
    target: str = ""
    timesteps: int | None = None
    batch_size: int | None = None
    opset: int | None = None
    calibration: str | None = None
    tolerance: Tolerance = field(default_factory=Tolerance)
    samples: int | None = None
    seed: int = 0
    value_range: str = "-1,1"

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE:
            raise BadInputError(f"--quantize {self.quantize!r}: one of {', '.join(QUANTIZE)}")
        if self.strategy not in STRATEGIES:
            raise BadInputError(f"--strategy {self.strategy!r}: one of {', '.join(STRATEGIES)}")
        if self.target and self.target not in TARGETS:
            raise BadInputError(f"--target {self.target!r}: one of {', '.join(TARGETS)}")
        if self.calibration is not None and self.quantize != "int8":
            raise BadInputError(f"--calibration {self.calibration}: only --quantize int8 calibrates")

    @property
    def proof_samples(self) -> int:
        """How many sequences the proof generates by default (run.proof_samples raises it for class scores)."""
        return self.samples or (QUANTIZED_SAMPLES if self.quantize != "none" else FLOAT_SAMPLES)

    @property
    def profile(self) -> str:
        """The gate's pass rule for this precision."""
        return PROFILE_FOR_QUANTIZE[self.quantize]


def format_for(path: str) -> str:
    """ "onnx" or "tflite" from OUT's extension; raises BadInputError for any other."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise BadInputError(f"{path}: the export format comes from the extension: .onnx (ONNX) or .tflite (LiteRT)")
    return FORMATS[suffix]


def check_for_format(options: ExportOptions, fmt: str, out: str) -> None:
    """Refuse options that the format has no use for, or a --target that runs another format (exit 2),
    rather than ignore them."""
    if options.opset is not None and fmt != "onnx":
        raise BadInputError(f"{out}: --opset is an ONNX setting; a .tflite has no opset")
    if options.target and TARGETS[options.target][0] != fmt:
        raise BadInputError(
            f"{out}: --target {options.target} runs .{TARGETS[options.target][0]} files; name OUT accordingly"
        )


def target_for(options: ExportOptions, fmt: str) -> str:
    """The runtime the export is made for and proven in: --target, else the format's own."""
    return options.target or DEFAULT_TARGET[fmt]
