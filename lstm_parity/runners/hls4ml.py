"""MODEL itself converted by hls4ml and run in its C++ emulation (the fixed-point arithmetic an FPGA
build computes), the only module that imports hls4ml. `--against hls4ml` or `hls4ml:CONFIG.yml`.

hls4ml converts a Keras model object, so the model is loaded by the Keras of its generation
(keras_runner.load_keras: compile=False, safe_mode unless the model code is trusted): Keras 3 models
through hls4ml's Keras 3 converter, tf_keras models through its Keras 2 one (its public
convert_from_keras_model sends every model to the Keras 3 converter when Keras 3 is installed, which
fails on tf_keras objects). The precision config is hls4ml's default or the user's YAML (read and
checked by hls4ml_config.py). hls4ml's default is what it gives itself: for a Keras 3 model
`hls4ml.utils.config_from_keras_model(model)` (fixed<16,6> everywhere, tables fixed<18,8>), for a tf_keras
model (which that function cannot parse when Keras 3 is installed) the defaults its converter fills in
for an empty config. The project is written to a temporary folder, removed by close() or when the
conversion or compilation fails, and compiled with g++ (hls4ml's build_lib.sh; no FPGA tools needed,
about 3-4 s for a small LSTM); every layer is compiled with hls4ml's trace enabled, so `layer_trace`
gives each layer's output (its per-layer trace) without compiling again.

hls4ml internals used, pinned by the [hls4ml] extra (hls4ml>=1.3,<2) and covered by the tests:
hls4ml.converters.keras_v2_to_hls, _check_model_config and _check_hls_config (the Keras 2 path, as
convert_from_keras_model builds its config), the graph's `graph`, `config.trace_output` and
`config.model_precision`, layers' `types`/`expected_attributes`, and `ModelGraph.trace`, which
recompiles the project unless told not to: layer_trace replaces the graph's `compile` by a no-op for
the call (the project already has tracing compiled in), and trace() changes the process' working
directory for its duration (under quiet_stderr's lock, like every capture here).

hls4ml's chatter (conversion printouts, compiler output) is captured; a layer it cannot convert, or a
C++ compile error, is one exit-4 line quoting hls4ml (or g++).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from typing import Any

import numpy as np

from ..compare import ComparisonResult
from ..errors import BadInputError, KerasSideError, first_line
from ..quiet_stderr import native_output
from ..spec import ModelSpec
from .base import RunnerInfo
from .exports import import_runtime
from .hls4ml_config import Hls4mlConfig, check_values, config_notes, read_config

RUNTIME = "hls4ml"
PROJECT = "lstm_parity"  # the generated project's top function
# Backends whose build_lib.sh compiles the C++ emulation with g++ (hls4ml 1.3's templates: CC=g++).
GPP_BACKENDS = ("vivado", "vitis", "vivadoaccelerator", "quartus", "catapult", "symbolicexpression")
DEFAULT_ROUNDING = ",TRN,WRAP,0>"  # fixed<W,I,TRN,WRAP,0> is printed fixed<W,I>
COMPILER_TROUBLE = ("error", "not found", "no such file", "cannot execute")  # compiler output lines worth quoting


class Hls4mlRunner:
    """The compiled C++ emulation behind the Runner interface (base.py). Inputs and outputs are the
    model's own, in its order; every input is fed as float32 (hls4ml's bridge takes float arrays).
    `input_shapes` are the converted model's, batch axis None (its time axis is fixed)."""

    def __init__(self, graph: Any, folder: str, spec: ModelSpec, config: Hls4mlConfig, census: dict, version: str):
        self.graph, self.folder, self.path = graph, folder, config.source or spec.source
        self.input_names = spec.input_names
        self.input_shapes: list[tuple[int | None, ...]] = [
            (None, *(int(d) for d in var.shape)) for var in graph.get_input_variables()
        ]
        self.output_shapes = [tuple(int(d) for d in var.shape) for var in graph.get_output_variables()]
        self.census = census
        notes = config_notes(config, graph)
        self._notes = tuple(notes)
        self.info = RunnerInfo(
            kind="hls4ml",
            label=f"hls4ml {os.path.basename(config.source or spec.source)}",
            version=version,
            path=self.path,
            matching="inputs and outputs by position (the model converted itself)",
            notes=tuple(notes),
            census=census,
        )

    def explain(self, result: ComparisonResult) -> None:
        """After a failure (`result`, judged as the report judges this side), add a note saying it is fixed
        point by design and how to judge it (see failure_note); the check flow calls this."""
        note = failure_note(self.census["config"], result)
        self.info = dataclasses.replace(self.info, notes=(*self._notes, *([note] if note else [])))

    def predict(self, inputs: list[np.ndarray], start: int, stop: int) -> list[np.ndarray]:
        """Outputs of rows [start, stop), one (rows, ...) float array per model output. Raises
        BadInputError when the inputs do not fit the converted model, KerasSideError when it fails."""
        feed = self._feed(inputs)
        rows = feed[0].shape[0]
        try:
            raw = self.graph.predict(feed[0] if len(feed) == 1 else feed)
        except Exception as exc:
            raise KerasSideError(f"{self.path}: {RUNTIME} failed to run it: {first_line(exc)}") from None
        outputs = [raw] if len(self.output_shapes) == 1 else list(raw)
        return [np.asarray(y).reshape(rows, *shape) for y, shape in zip(outputs, self.output_shapes, strict=True)]

    def layer_trace(self, inputs: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        """hls4ml's own per-layer trace of `inputs`: {Keras layer name: [(rows, ...) output]}, for every
        layer the conversion kept, keyed and shaped as the reference's layer outputs (a Dense whose
        activation hls4ml splits off is traced after that activation). For --layerwise."""
        feed = self._feed(inputs)
        rows = feed[0].shape[0]
        compile_again = self.graph.compile
        self.graph.compile = lambda: None  # trace() recompiles; this project already has tracing compiled in
        try:
            with native_output():  # holds quiet_stderr's lock: trace() also changes the process' working directory
                _, traced = self.graph.trace(feed[0] if len(feed) == 1 else feed)
        except Exception as exc:
            raise KerasSideError(f"{self.path}: {RUNTIME} failed to trace it: {first_line(exc)}") from None
        finally:
            self.graph.compile = compile_again
        result = {}
        for name, last in keras_layer_ends(self.graph).items():
            if last in traced:
                shape = tuple(int(d) for d in self.graph.graph[last].get_output_variable().shape)
                result[name] = [np.asarray(traced[last]).reshape(rows, *shape)]
        return result

    def _feed(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The inputs as C-contiguous float32, checked against the converted model's shapes."""
        if len(inputs) != len(self.input_shapes):
            raise BadInputError(f"{self.path}: got {len(inputs)} input arrays, the model has {len(self.input_shapes)}")
        feed = []
        for x, shape, name in zip(inputs, self.input_shapes, self.input_names, strict=True):
            if tuple(x.shape[1:]) != shape[1:]:
                raise BadInputError(
                    f"{self.path}: input '{name}' has shape {x.shape}; the hls4ml model takes {shape[1:]} "
                    f"per sample (its time axis is fixed)"
                )
            feed.append(np.ascontiguousarray(x, dtype=np.float32))  # (rows, ...)
        return feed

    def close(self) -> None:
        """Forget the compiled model and remove its project folder."""
        self.graph = None
        shutil.rmtree(self.folder, ignore_errors=True)


def open_hls4ml(spec: ModelSpec, config_path: str | None = None, trust_model_code: bool = False) -> Hls4mlRunner:
    """Convert the model of `spec` with hls4ml (its default config, or the YAML at `config_path`),
    compile its C++ emulation in a temporary folder, and return it as a runner.

    Raises BadInputError (2) for a JSON dump (no Keras model) or a bad YAML (unreadable, a wrong shape, an
    unknown backend or IO type, a precision the backend cannot parse), KerasSideError (4) when hls4ml,
    Keras or g++ is missing, hls4ml cannot convert a layer, or the C++ does not compile."""
    if spec.file_format == "dump-json":
        raise BadInputError(f"{spec.source}: hls4ml converts the Keras model; give the .h5/.keras file, not a dump")
    hls4ml = import_runtime("hls4ml", "hls4ml", config_path or spec.source)
    config = read_config(config_path) if config_path else Hls4mlConfig(None)
    check_values(config, hls4ml)
    compiler = _compiler(config.backend, config_path or spec.source)
    from ..keras_runner import load_keras

    layers = [(layer.class_name, layer.config) for layer in spec.layers]
    loaded = load_keras(spec.source, spec.file_format, spec.semantics, layers, trust_model_code)
    folder = tempfile.mkdtemp(prefix="lstm-parity-hls4ml-")
    where = f"{config_path or spec.source}: {RUNTIME} {hls4ml.__version__}"
    try:
        graph = _convert(hls4ml, loaded, config, folder, where)
        _compile(graph, where)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    census = {
        "format": "hls4ml",
        "backend": config.backend,
        "io_type": config.io_type,
        "config": config.label(str(graph.config.model_precision.get("default", "?"))),
        "compiler": compiler,
        "precisions": layer_precisions(graph),
        "layers": {name: layer.class_name for name, layer in graph.graph.items()},
    }
    return Hls4mlRunner(graph, folder, spec, config, census, str(hls4ml.__version__))


def failure_note(config_label: str, result: ComparisonResult) -> str:
    """After a failure: the numbers are fixed point by design; the atol these inputs need (rounded up
    to two digits), how to get closer, and where to look. "" when `result` passed."""
    if result.passed:
        return ""
    needed = max((out.min_atol_to_pass for out in result.outputs), default=0.0)
    atol = f"--atol {_round_up(needed):g} (what these inputs need) or " if math.isfinite(needed) else ""
    return (
        f"fixed-point arithmetic with {config_label} differs from the float reference by design: judge it with "
        f"{atol}a --profile, raise the precision in a config (hls4ml:CONFIG.yml), and see --layerwise for the "
        f"layer and timestep that use up the tolerance"
    )


def _round_up(value: float) -> float:
    """`value` rounded up to two significant digits (0.01472 -> 0.015)."""
    if value <= 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(value)) - 1)
    return math.ceil(value / scale - 1e-9) * scale


def keras_layer_ends(graph: Any) -> dict[str, str]:
    """{Keras layer name: the hls4ml layer whose output is that layer's output}: the layer of the same
    name, or the activation hls4ml split off it (named `<layer>_<activation>`, fed by it alone)."""
    layers = graph.graph  # name -> hls4ml layer, in order
    ends = {}
    for name in layers:
        last = name
        while True:
            followers = [
                other
                for other in layers.values()
                if list(other.inputs) == [last] and other.name == f"{name}_{other.get_attr('activation')}"
            ]
            if len(followers) != 1:
                break
            last = followers[0].name
        ends[name] = last
    split_off = {last for name, last in ends.items() if last != name}  # activations hls4ml split off a layer
    return {name: last for name, last in ends.items() if name not in split_off}


def layer_precisions(graph: Any) -> dict[str, str]:
    """{layer: its precisions}, e.g. "fixed<16,6> (table fixed<18,8>)": the most used type, then the
    others by the variable they type; index types left out; hls4ml's default rounding not spelled out.
    The Input layer is listed too: its type is what the inputs are quantized to."""
    found = {}
    for name, layer in graph.graph.items():
        types = {
            key.removesuffix("_t"): str(variable.precision).replace(DEFAULT_ROUNDING, ">")
            for key, variable in getattr(layer, "types", {}).items()
            if key != "index_t"
        }
        if not types:
            continue
        common = Counter(types.values()).most_common(1)[0][0]
        others = ", ".join(f"{key} {text}" for key, text in types.items() if text != common)
        found[name] = f"{common} ({others})" if others else common
    return found


def _compiler(backend: str, where: str) -> str:
    """The C++ compiler hls4ml's build script calls, with its version ("g++ 12.2.0"); raises
    KerasSideError when the backend compiles with g++ and there is none on PATH."""
    if backend.lower() not in GPP_BACKENDS:
        return f"{backend}'s compiler"
    gpp = shutil.which("g++")
    if gpp is None:
        raise KerasSideError(
            f"{where}: hls4ml compiles its C++ emulation with g++, which is not on PATH; install a C++ "
            f"compiler (e.g. apt-get install g++)"
        )
    try:
        version = subprocess.run([gpp, "-dumpfullversion"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    return f"g++ {version.strip()}".strip()


def _convert(hls4ml: Any, loaded: Any, config: Hls4mlConfig, folder: str, where: str) -> Any:
    """The hls4ml ModelGraph of the loaded Keras model, every layer traced; raises KerasSideError
    quoting hls4ml when it cannot convert a layer."""
    try:
        with native_output():
            hls_config = _hls_config(hls4ml, loaded, config)
            if loaded.package == "keras":
                graph = hls4ml.converters.convert_from_keras_model(
                    loaded.model,
                    output_dir=folder,
                    project_name=PROJECT,
                    backend=config.backend,
                    io_type=config.io_type,
                    hls_config=hls_config,
                )
            else:
                graph = _convert_keras2(loaded.model, hls_config, config, folder)
    except Exception as exc:
        advice = (
            "; hls4ml needs fixed shapes: build the model with Input((timesteps, features))"
            if ("None in shape" in str(exc))
            else ""
        )
        raise KerasSideError(f"{where} cannot convert it: {first_line(exc)}{advice}") from None
    for layer in graph.get_layers():
        layer.set_attr("trace", True)
    graph.config.trace_output = True
    return graph


def _hls_config(hls4ml: Any, loaded: Any, config: Hls4mlConfig) -> dict[str, Any]:
    """The HLSConfig to convert with: a copy of the user's, or hls4ml's default for this model (for a
    Keras 3 model config_from_keras_model's; for tf_keras, which it cannot parse, {}: the Keras 2 path
    fills in its converter's defaults)."""
    if config.hls_config is not None:
        return copy.deepcopy(config.hls_config)
    if loaded.package == "keras":
        return dict(hls4ml.utils.config_from_keras_model(loaded.model, granularity="model", backend=config.backend))
    return {}


def _convert_keras2(model: Any, hls_config: dict[str, Any], config: Hls4mlConfig, folder: str) -> Any:
    """A tf_keras model through hls4ml's Keras 2 converter, with the config convert_from_keras_model
    builds (its own helpers: Model precision and reuse factor defaulted, the other HLSConfig keys kept)."""
    converters = importlib.import_module("hls4ml.converters")
    create_config = importlib.import_module("hls4ml.utils.config").create_config
    keras_v2_to_hls = importlib.import_module("hls4ml.converters.keras_v2_to_hls").keras_v2_to_hls
    project = create_config(output_dir=folder, project_name=PROJECT, backend=config.backend, io_type=config.io_type)
    project.update(KerasModel=model, InputData=None, OutputPredictions=None, HLSConfig={})
    project["HLSConfig"]["Model"] = converters._check_model_config(hls_config.get("Model"))
    project["HLSConfig"]["Model"]["BitExact"] = None
    converters._check_hls_config(project, hls_config)
    return keras_v2_to_hls(project)


def _compile(graph: Any, where: str) -> None:
    """Write and compile the project; raises KerasSideError with the compiler's first error line."""
    try:
        with native_output() as printed:
            graph.compile()
    except Exception as exc:
        telling = [line for line in printed if any(word in line.lower() for word in COMPILER_TROUBLE)]
        detail = telling[0][:240] if telling else first_line(exc)
        raise KerasSideError(f"{where} could not compile its C++ emulation: {detail}") from None
