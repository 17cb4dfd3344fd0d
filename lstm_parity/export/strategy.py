"""Which conversion path an export takes, and why, decided from the model and the options alone (before
any converter runs), with the combinations no runtime can do correctly refused by name (exit 3).

ONNX (tf2onnx on a SavedModel of the rebuilt Keras 3 model):
- auto: tf2onnx writes each recurrent layer as ONNX's fused LSTM op where it recognises the layer
  (a plain sigmoid/tanh LSTM, Bidirectional too), else as a Loop over the time axis (GRU, masks,
  Keras 3 hard_sigmoid). Both keep no state between runs and take any batch size and length.
- fused / loop: the same conversion, required to come out that way (checked on the graph, exit 3 if not).
- unrolled: `unroll=True` at a fixed length: plain ops, no loop at all (checked on the graph).
LiteRT (TFLite converter, builtin ops only, from the rebuilt Keras 3 model):
- unrolled (auto up to UNROLL_LIMIT steps): `unroll=True` at a fixed length: builtin ops, no state, any
  batch size. The measured alternative paths are wrong or unrunnable: Keras' format="litert" needs Flex
  ops for LSTM/GRU, and the fused UNIDIRECTIONAL_SEQUENCE_LSTM keeps h and c in variable tensors, so a
  second invoke() continues the first sequence.
- loop (auto beyond UNROLL_LIMIT steps, for stateful models and for models Keras 3 cannot unroll
  correctly, see `unroll_problems`): a WHILE loop at a fixed batch size: any sequence length; a stateful
  model's states live in resource variables and carry over from one invoke() to the next, as Keras
  carries them across batches.
- fused: refused (exit 3): the fused LSTM op takes no mask and, in a model that is not stateful, carries
  h and c from one invoke() to the next; a stateful model's states are kept by the loop.
A model that is not stateful takes any batch size unless --batch-size fixes one (a batch size saved in
its config binds only stateful layers, whose states have that many rows).
TFLite Micro (--target tflm; the same converter, measured with tflite-micro 0.dev2026-10): it runs only
the shapes stored in the file, so the batch is fixed (1 unless --batch-size) and so is the length (the
model's or --timesteps, exit 3 asking for it). Then unrolled and loop are as for LiteRT (both exact on
repeated invokes), and a stateful model's loop keeps its states in resource variables. Refused (exit 3):
the fused LSTM (its variable tensors leak state between invokes), masks and float16 / dynamic-range
weights (TFLite Micro has no kernels for them, see `tflm_limits`). A dynamic batch is never written: its
unrolled file does not even allocate in TFLite Micro ("FILL failed to prepare").
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BadInputError, UnsupportedError
from ..reference.forward import fixed_batch_size, stateful_layers
from ..spec import LayerSpec, ModelSpec
from ..upgrade import UNROLLABLE
from .options import ExportOptions, target_for

# auto unrolls sequences up to this many steps for TFLite; longer ones get a loop. Read at call time, so
# tests (and library users) may set it.
UNROLL_LIMIT = 200
RECURRENT = ("LSTM", "GRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
WRAPPERS = ("Bidirectional", "TimeDistributed")


@dataclass(frozen=True)
class Strategy:
    """The path chosen. `name`: unrolled, loop, fused or auto (ONNX: tf2onnx's choice, named after the
    conversion from the graph); `input_shapes`: the rebuilt model's inputs (batch first, None where
    open); `unroll`: the recurrent layers' flag; `reason`: why, in one sentence for the report."""

    format: str
    name: str
    requested: str
    input_shapes: tuple[tuple[int | None, ...], ...]
    unroll: bool
    reason: str

    @property
    def batch(self) -> int | None:
        """The fixed batch size, or None when any batch size runs."""
        sizes = {shape[0] for shape in self.input_shapes if shape}
        return sizes.pop() if len(sizes) == 1 else None

    @property
    def timesteps(self) -> int | None:
        """The fixed length of the first sequence input, or None when open (or no sequence input)."""
        return next((shape[1] for shape in self.input_shapes if len(shape) >= 2), None)


def masks(spec: ModelSpec) -> bool:
    """Does the model build a mask (a Masking layer, or an Embedding with mask_zero)?"""
    return any(
        layer.class_name == "Masking" or (layer.class_name == "Embedding" and layer.config.get("mask_zero"))
        for layer in spec.layers
    )


def _inner(layer: LayerSpec) -> dict:
    """The config of the layer a wrapper holds ({} for a layer that is no wrapper)."""
    inner = layer.config.get("layer") if layer.class_name in WRAPPERS else None
    return (inner.get("config") or {}) if isinstance(inner, dict) else {}


def recurrent_classes(spec: ModelSpec) -> list[str]:
    """The recurrent layers' classes in model order, wrappers unwrapped (Bidirectional(LSTM) -> LSTM)."""
    found = []
    for layer in spec.layers:
        inner = layer.config.get("layer") if layer.class_name in WRAPPERS else None
        name = inner.get("class_name", "") if isinstance(inner, dict) else layer.class_name
        if name in RECURRENT:
            found.append(name)
    return found


def sequence_inputs(spec: ModelSpec) -> list[bool]:
    """Per model input: does axis 1 run over time? (rank 3 and up, or token ids of rank 2)."""
    return [
        len(shape) >= 3 or (len(shape) == 2 and tokens)
        for shape, tokens in zip(spec.input_shapes, spec.token_inputs(), strict=True)
    ]


def backward_zeroed_layers(spec: ModelSpec) -> list[str]:
    """In a model that masks: the layers that run backwards and zero their masked outputs while returning
    sequences (every Bidirectional returning sequences forces zero_output_for_mask on its backward
    layer). Keras 3's unrolled loop zeroes those outputs with the mask in forward order while the outputs
    are in backward order, so padded and real steps are swapped (measured 1.06e-2 off on a Bidirectional
    LSTM of 4 units; 0.89 off on a corpus NER model); its loop computes them right."""
    if not masks(spec):
        return []
    found = []
    for layer in spec.layers:
        config = _inner(layer) if layer.class_name == "Bidirectional" else layer.config
        backwards = layer.class_name == "Bidirectional" or (
            config.get("go_backwards") and config.get("zero_output_for_mask")
        )
        if backwards and config.get("return_sequences"):
            found.append(layer.name)
    return found


def unroll_problems(spec: ModelSpec) -> list[str]:
    """Why Keras 3 cannot unroll this model correctly, one sentence each; empty when it can."""
    problems = [
        f"Keras 3 cannot unroll {name} (only {', '.join(UNROLLABLE)} take unroll=True)"
        for name in dict.fromkeys(recurrent_classes(spec))
        if name not in UNROLLABLE
    ]
    problems += [
        f"layer {name!r} runs backwards over masked input and returns sequences, and Keras 3's unrolled loop "
        f"zeroes its padded outputs at the wrong steps (measured 1e-2 off; its loop is right)"
        for name in backward_zeroed_layers(spec)
    ]
    return problems


def _shapes(
    spec: ModelSpec, batch: int | None, timesteps: int | None, need_time: bool, source: str
) -> tuple[tuple[int | None, ...], ...]:
    """The inputs' shapes with the batch set to `batch` and open time axes to `timesteps`. A time axis
    the model fixes must agree with --timesteps (exit 2); one left open when `need_time` is exit 3."""
    shapes = []
    for shape, sequence, name in zip(spec.input_shapes, sequence_inputs(spec), spec.input_names, strict=True):
        dims = list(shape)
        dims[0] = batch
        if sequence:
            if dims[1] is not None and timesteps is not None and dims[1] != timesteps:
                raise BadInputError(f"{source}: input {name!r} fixes {dims[1]} timesteps; --timesteps {timesteps}")
            if dims[1] is None:
                dims[1] = timesteps
            if dims[1] is None and need_time:
                raise UnsupportedError(
                    f"{source}: input {name!r} has an open time axis and this export unrolls the recurrence "
                    f"over a fixed length: pass --timesteps T (or --strategy loop for any length at a fixed "
                    f"batch size)"
                )
        shapes.append(tuple(dims))
    return tuple(shapes)


def _batch(spec: ModelSpec, options: ExportOptions, source: str, stateful: list[str]) -> int | None:
    """--batch-size, else the stateful model's own batch size, else None (any). A stateful model's batch
    size cannot change: its states have that many rows (exit 2). A batch size saved by a model that is
    not stateful binds nothing (each sample is computed alone) and is left open."""
    fixed = fixed_batch_size(spec) if stateful else None
    if fixed is not None and options.batch_size not in (None, fixed):
        raise BadInputError(
            f"{source}: the stateful model keeps states for batches of {fixed}; --batch-size {options.batch_size} "
            f"cannot change that"
        )
    return options.batch_size or fixed


def _batch_text(batch: int | None, options: ExportOptions) -> str:
    if batch is None:
        return "any batch size"
    return f"batches of exactly {batch}" + (" (--batch-size)" if options.batch_size else " (the model's)")


def _length_text(timesteps: int | None, options: ExportOptions) -> str:
    if timesteps is None:
        return "any length"
    return f"{timesteps} timesteps" + (" (--timesteps)" if options.timesteps else " (the model's)")


def _refuse_unrolling(source: str, problems: list[str]) -> None:
    if problems:
        raise UnsupportedError(f"{source}: --strategy unrolled: {problems[0]}; use --strategy auto")


def choose_strategy(spec: ModelSpec, fmt: str, options: ExportOptions) -> Strategy:
    """The strategy for exporting `spec` as `fmt` ("onnx" or "tflite") under `options`.

    Raises UnsupportedError (exit 3) naming the limit when the runtime cannot compute the model correctly
    that way (a stateful model to ONNX, the fused TFLite LSTM, an open length to unroll, a model Keras 3
    cannot unroll, what TFLite Micro cannot run), BadInputError (exit 2) for options that contradict the
    model."""
    source = spec.source
    stateful = stateful_layers(spec)
    requested = options.strategy
    if target_for(options, fmt) == "tflm":
        return _tflm_strategy(spec, options, stateful)
    if fmt != "onnx":
        return _tflite_strategy(spec, options, stateful)
    if stateful:
        raise UnsupportedError(
            f"{source}: stateful layers {stateful} carry their states from one call to the next, and an ONNX "
            f"Runtime session keeps no state between runs (every run would start from zero states); "
            f"export to .tflite, which keeps them in variables"
        )
    unroll = requested == "unrolled"
    if unroll:
        _refuse_unrolling(source, unroll_problems(spec))
    shapes = _shapes(spec, _batch(spec, options, source, stateful), options.timesteps, unroll, source)
    strategy = Strategy(fmt, requested, requested, shapes, unroll, "")
    sizes = f"{_batch_text(strategy.batch, options)}, {_length_text(strategy.timesteps, options)}"
    if unroll:
        reason = f"unroll=True: plain ops, no loop, {sizes} (requested)"
    else:
        reason = (
            f"tf2onnx writes each recurrent layer as a fused ONNX op where it recognises it, else as a Loop; "
            f"no state kept between runs; {sizes}"
        )
        if requested in ("fused", "loop"):
            reason += f" ({requested} requested: checked on the converted graph)"
    return Strategy(fmt, requested, requested, shapes, unroll, reason)


def _tflite_strategy(spec: ModelSpec, options: ExportOptions, stateful: list[str]) -> Strategy:
    source = spec.source
    requested = options.strategy
    if requested == "fused":
        raise UnsupportedError(f"{source}: {_fused_refusal(spec, stateful)}")
    batch = _batch(spec, options, source, stateful)
    _refuse_stateful_unrolled(source, stateful, requested)
    problems = unroll_problems(spec)
    if requested == "unrolled":
        _refuse_unrolling(source, problems)
    if requested == "unrolled" or (requested == "auto" and not stateful and not problems):
        shapes = _shapes(spec, batch, options.timesteps, True, source)
        longest = max((shape[1] or 0 for shape in shapes if len(shape) >= 2), default=0)
        if requested == "unrolled" or longest <= UNROLL_LIMIT:
            unrolled = Strategy("tflite", "unrolled", requested, shapes, True, "")
            why = (
                f"unroll=True at {_length_text(unrolled.timesteps, options)}: builtin ops only, no state between "
                f"invokes, {_batch_text(unrolled.batch, options)}"
            )
            reason = why + (
                " (the fused LSTM op keeps state between invokes; Keras' own LiteRT export needs Flex ops)"
                if requested == "auto"
                else " (requested)"
            )
            return Strategy("tflite", "unrolled", requested, shapes, True, reason)
        why = _too_long(longest)
    elif problems and requested == "auto":
        why = problems[0]
    else:
        why = "requested" if not stateful else ""
    if options.quantize == "int8":
        unrollable = not stateful and not problems
        raise _int8_loop_refusal(
            source, "--strategy unrolled with --timesteps" if unrollable else "", "dynamic or float16"
        )
    batch = batch or 1
    shapes = _shapes(spec, batch, options.timesteps, False, source)
    _refuse_open_time_distributed(spec, shapes)
    length = _length_text(Strategy("tflite", "loop", requested, shapes, False, "").timesteps, options)
    if stateful:
        reason = (
            f"stateful layers {stateful}: a WHILE loop at the model's batch size {batch}, its states kept in "
            f"variables from one invoke() to the next, as Keras carries them across batches; {length}"
        )
    else:
        given = "--batch-size" if options.batch_size else "the default; --batch-size N for another"
        reason = f"a WHILE loop at a fixed batch size of {batch} ({given}): builtin ops, {length} ({why})"
    return Strategy("tflite", "loop", requested, shapes, False, reason)


def _refuse_stateful_unrolled(source: str, stateful: list[str], requested: str) -> None:
    if stateful and requested == "unrolled":
        raise UnsupportedError(
            f"{source}: stateful layers {stateful} carry states across calls and an unrolled TFLite "
            f"export keeps none; use --strategy loop (the default for stateful models)"
        )


def _int8_loop_refusal(source: str, unrolled: str, quantize: str) -> UnsupportedError:
    """Full int8 of a TFLite loop; `unrolled` names how to unroll instead ("" where the model cannot be),
    `quantize` the other --quantize values that work."""
    return UnsupportedError(
        f"{source}: the TFLite int8 calibrator crashes the process on a WHILE loop (tensorflow 2.21); use "
        + (f"{unrolled}, or " if unrolled else "")
        + f"--quantize {quantize}"
    )


def _too_long(longest: int) -> str:
    return (
        f"{longest} timesteps are more than the {UNROLL_LIMIT} auto unrolls (every step written out: 905 "
        f"steps of two LSTM layers measured 5.4 MB and 100 s to export, as a loop 0.46 MB and 12 s); "
        f"--strategy unrolled unrolls anyway"
    )


# What TFLite Micro has no kernels for (measured, tflite-micro 0.dev2026-10, on unrolled batch-1 files that
# LiteRT runs exactly): the quantizations, and the ops Keras' masks convert to.
TFLM_QUANTIZE_REFUSED = {
    "float16": "TFLite Micro's DEQUANTIZE takes no float16 weights (it takes int8, int16 and uint8)",
    "dynamic": "TFLite Micro's FULLY_CONNECTED takes no int8 weights with float32 inputs (no hybrid kernels)",
}
TFLM_MASK_OPS = "REDUCE_ANY, SELECT"


def tflm_limits(spec: ModelSpec, options: ExportOptions) -> None:
    """Raise UnsupportedError (exit 3, one line) for what TFLite Micro cannot run: float16 or dynamic-range
    weights, a mask, an open time axis without --timesteps (it runs only the stored shapes)."""
    source = spec.source
    if options.quantize in TFLM_QUANTIZE_REFUSED:
        raise UnsupportedError(
            f"{source}: --target tflm --quantize {options.quantize}: {TFLM_QUANTIZE_REFUSED[options.quantize]}; "
            f"use --quantize int8 (full integer) or none"
        )
    if masks(spec):
        raise UnsupportedError(
            f"{source}: --target tflm: the model masks its input, and TFLite Micro has no kernels for the ops "
            f"masks convert to ({TFLM_MASK_OPS}); drop the mask for the device build, or export for LiteRT"
        )
    for shape, sequence, name in zip(spec.input_shapes, sequence_inputs(spec), spec.input_names, strict=True):
        if sequence and shape[1] is None and options.timesteps is None:
            raise UnsupportedError(
                f"{source}: --target tflm: input {name!r} has an open time axis, and TFLite Micro runs only the "
                f"shapes stored in the file: pass --timesteps T"
            )


def _tflm_strategy(spec: ModelSpec, options: ExportOptions, stateful: list[str]) -> Strategy:
    """The TFLite Micro file: LiteRT's unrolled or loop strategy at a fixed batch (1 unless --batch-size,
    a stateful model's own) and a fixed length; the limits of `tflm_limits` refused."""
    source = spec.source
    requested = options.strategy
    if requested == "fused":
        raise UnsupportedError(f"{source}: --target tflm: {_fused_refusal(spec, stateful)}")
    tflm_limits(spec, options)
    _refuse_stateful_unrolled(source, stateful, requested)
    problems = unroll_problems(spec)
    if requested == "unrolled":
        _refuse_unrolling(source, problems)
    batch = _batch(spec, options, source, stateful) or 1
    shapes = _shapes(spec, batch, options.timesteps, True, source)
    length = _length_text(Strategy("tflite", "", requested, shapes, False, "").timesteps, options)
    given = "--batch-size" if options.batch_size else "the model's" if stateful else "the default"
    fixed = f"{length}, a fixed batch of {batch} ({given})"
    longest = max((shape[1] or 0 for shape in shapes if len(shape) >= 2), default=0)
    if requested == "unrolled" or (requested == "auto" and not stateful and not problems and longest <= UNROLL_LIMIT):
        reason = (
            f"unroll=True at {fixed}: builtin ops only, no state between invokes; TFLite Micro runs only the "
            f"shapes stored in the file (an unrolled dynamic batch does not allocate there: FILL failed to "
            f"prepare)"
            + (" (requested)" if requested == "unrolled" else "; the fused LSTM keeps state between invokes")
        )
        return Strategy("tflite", "unrolled", requested, shapes, True, reason)
    if options.quantize == "int8":
        raise _int8_loop_refusal(source, "--strategy unrolled" if not stateful and not problems else "", "none")
    if stateful:
        why = f"stateful layers {stateful}: their states kept in variables from one invoke() to the next"
    elif requested == "loop":
        why = "requested"
    elif problems:
        why = problems[0]
    else:
        why = _too_long(longest)
    return Strategy("tflite", "loop", requested, shapes, False, f"a WHILE loop at {fixed}: builtin ops ({why})")


def time_distributed_dense(spec: ModelSpec) -> list[str]:
    """TimeDistributed layers wrapping a Dense: Dense computes the same on every step by itself."""
    return [
        layer.name
        for layer in spec.layers
        if layer.class_name == "TimeDistributed" and (layer.config.get("layer") or {}).get("class_name") == "Dense"
    ]


def _refuse_open_time_distributed(spec: ModelSpec, shapes: tuple[tuple[int | None, ...], ...]) -> None:
    """A TFLite WHILE loop over an open time axis followed by TimeDistributed gives a time axis of 1 (the
    converter folds the layer's reshape at the fixed batch size). TimeDistributed(Dense) is rebuilt as
    Dense (rebuild.py); any other wrapped layer needs a fixed length (exit 3)."""
    if all(shape[1] is not None for shape, sequence in zip(shapes, sequence_inputs(spec), strict=True) if sequence):
        return
    dense = set(time_distributed_dense(spec))
    other = [layer.name for layer in spec.layers if layer.class_name == "TimeDistributed" and layer.name not in dense]
    if other:
        raise UnsupportedError(
            f"{spec.source}: TimeDistributed layer {other[0]!r} after a TFLite WHILE loop over an open time axis "
            f"comes out with a time axis of 1; pass --timesteps T to fix the length"
        )


def _fused_refusal(spec: ModelSpec, stateful: list[str]) -> str:
    """Why the fused TFLite LSTM (UNIDIRECTIONAL_SEQUENCE_LSTM) is not written for this model."""
    if masks(spec):
        others = "loop" if unroll_problems(spec) else "unrolled or loop"
        return f"the fused TFLite LSTM op takes no mask, and this model masks its input; use --strategy {others}"
    if not stateful:
        return (
            "the fused TFLite LSTM keeps h and c in variable tensors, so a second invoke() continues the first "
            "sequence instead of starting a new one (measured: 0.05 off); use --strategy unrolled (the default) "
            "or loop"
        )
    return (
        "the TFLite converter does not fuse Keras 3's LSTM; --strategy loop (the default for stateful models) "
        "keeps the states in variables as the fused op would"
    )
