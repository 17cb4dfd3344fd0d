"""The precision config of `--against hls4ml:CONFIG.yml`: read, checked, and compared with the model.

A YAML is an hls4ml project config (HLSConfig, Backend and IOType used; KerasH5, OutputDir and the rest
not: MODEL is converted, in a temporary folder) or a bare HLSConfig (Model, LayerName, LayerType...).
hls4ml itself takes any dict and silently ignores what it does not know (a misspelled `ReuseFact`, a
LayerName that names no layer, a key a layer does not have), and fails late with a Python error on a
wrong shape (`Model: "fixed<16,6>"`) or an unparsable precision. So here:
- wrong shapes, an unknown backend or IO type, and precisions the backend cannot parse are bad input
  (exit 2), before anything is converted (`read_config`, `check_values`);
- what hls4ml would ignore is named in the report's notes (`config_notes`, once the model is converted
  and the layers' own attributes are known).
The key lists follow hls4ml 1.3's HLSConfig parser (hls4ml.model.graph.HLSConfig) and converters.
Nothing here imports hls4ml or PyYAML at module import: they are passed in or imported by the caller's
import_runtime.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import BadInputError, first_line
from .exports import import_runtime

HLS_CONFIG_KEYS = ("Model", "LayerName", "LayerType", "Flows", "Optimizers", "SkipOptimizers")
MODEL_KEYS = (  # what hls4ml 1.3 reads from HLSConfig.Model
    "Precision",
    "ReuseFactor",
    "Strategy",
    "BramFactor",
    "TraceOutput",
    "TargetCycles",
    "ConvImplementation",
    "Compression",
    "PipelineStyle",
    "PipelineInterval",
    "BitExact",
    "ChannelsLastConversion",
    "TransposeOutputs",
    "AllowDAFallback",
    "AllowV2Fallback",
)
# A LayerName/LayerType entry sets these, and any attribute the layer has (table_size, weight_t, ...).
LAYER_KEYS = ("Precision", "ReuseFactor", "Strategy", "TargetCycles", "ConvImplementation", "Compression", "Trace")
IO_TYPES = ("io_parallel", "io_stream")
DEFAULT_BACKEND, DEFAULT_IO_TYPE = "Vivado", "io_parallel"
MAX_CONFIG_BYTES = 1 << 20
CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


@dataclass(frozen=True)
class Hls4mlConfig:
    """How to convert: `hls_config` (hls4ml's HLSConfig: Model, LayerName, LayerType...; None for hls4ml's
    default, made from the model), its backend and io_type, `source` (the YAML's path, or "" for the
    default), the YAML's top-level keys not used (`ignored`) and HLSConfig keys hls4ml does not know."""

    hls_config: dict[str, Any] | None
    backend: str = DEFAULT_BACKEND
    io_type: str = DEFAULT_IO_TYPE
    source: str = ""
    ignored: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()

    def label(self, precision: str) -> str:
        """The precision config, for the report: "cfg.yml (Model precision fixed<10,4>)" or hls4ml's
        default; `precision` is the Model precision the conversion used."""
        name = os.path.basename(self.source) if self.source else "hls4ml's default"
        return f"{name} (Model precision {precision})"


def read_config(path: str) -> Hls4mlConfig:
    """The YAML at `path`, parsed with yaml.safe_load (no tags that build objects) and its shape checked
    (see the module). Raises BadInputError for an unreadable, oversized or malformed file or a wrong
    shape, KerasSideError without PyYAML."""
    yaml = import_runtime("yaml", "hls4ml", path)
    try:
        if os.path.getsize(path) > MAX_CONFIG_BYTES:
            raise BadInputError(f"{path}: an hls4ml config over {MAX_CONFIG_BYTES} bytes; refused")
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read the hls4ml config ({exc.strerror or exc})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not a valid YAML file ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: an hls4ml config is a YAML mapping (HLSConfig: ..., or Model: ...)")
    project = "HLSConfig" in data
    used: tuple[str, ...] = ("HLSConfig", "Backend", "IOType") if project else HLS_CONFIG_KEYS  # the keys read
    if project:
        hls_config = data["HLSConfig"]
    elif any(key in data for key in HLS_CONFIG_KEYS):
        hls_config = data
    else:
        raise BadInputError(f"{path}: no HLSConfig (nor Model/LayerName/LayerType) in this hls4ml config")
    if not isinstance(hls_config, dict):
        raise BadInputError(f"{path}: HLSConfig must be a mapping (Model: ..., LayerName: ...)")
    _check_shapes(path, hls_config)
    io_type = str(data.get("IOType", DEFAULT_IO_TYPE)) if project else DEFAULT_IO_TYPE
    if io_type not in IO_TYPES:
        raise BadInputError(f"{path}: IOType {io_type!r}: one of {', '.join(IO_TYPES)}")
    return Hls4mlConfig(
        hls_config={key: value for key, value in hls_config.items() if key in HLS_CONFIG_KEYS},
        backend=str(data.get("Backend", DEFAULT_BACKEND)) if project else DEFAULT_BACKEND,
        io_type=io_type,
        source=path,
        ignored=tuple(sorted(str(key) for key in data if key not in used)),
        unknown=tuple(sorted(str(key) for key in hls_config if key not in HLS_CONFIG_KEYS)) if project else (),
    )


def _check_shapes(path: str, hls_config: dict[str, Any]) -> None:
    """Model a mapping, LayerName/LayerType mappings of mappings, every Precision a string or a mapping of
    strings; raises BadInputError naming the place."""
    model = hls_config.get("Model")
    if model is not None and not isinstance(model, dict):
        raise BadInputError(f"{path}: Model must be a mapping (Model: {{Precision: fixed<16,6>}}), not {model!r}")
    _check_precision(path, "Model", (model or {}).get("Precision"))
    for section in ("LayerName", "LayerType"):
        entries = hls_config.get(section)
        if entries is None:
            continue
        if not isinstance(entries, dict):
            raise BadInputError(f"{path}: {section} must map names to settings ({section}: {{lstm: {{...}}}})")
        for name, settings in entries.items():
            if not isinstance(settings, dict):
                raise BadInputError(f"{path}: {section}.{name} must be a mapping of settings, not {settings!r}")
            _check_precision(path, f"{section}.{name}", settings.get("Precision"))


def _check_precision(path: str, where: str, precision: Any) -> None:
    if precision is None or isinstance(precision, str):
        return
    if isinstance(precision, dict) and all(isinstance(value, str) for value in precision.values()):
        return
    raise BadInputError(
        f"{path}: {where}.Precision must be a type such as fixed<16,6>, or a mapping of them, not {precision!r}"
    )


def precisions(hls_config: dict[str, Any]) -> list[tuple[str, str]]:
    """Every precision string of the config with where it is: ("Model.Precision", "fixed<16,6>"),
    ("LayerName.lstm.Precision.table", ...), and layer keys ending in _t ("LayerType.LSTM.table_t")."""
    found = []
    sections = [("Model", hls_config.get("Model") or {})]
    sections += [
        (f"{section}.{name}", settings)
        for section in ("LayerName", "LayerType")
        for name, settings in (hls_config.get(section) or {}).items()
    ]
    for where, settings in sections:
        precision = settings.get("Precision")
        if isinstance(precision, str):
            found.append((f"{where}.Precision", precision))
        elif isinstance(precision, dict):
            found += [(f"{where}.Precision.{key}", value) for key, value in precision.items()]
        found += [(f"{where}.{key}", value) for key, value in settings.items() if key.endswith("_t")]
    return found


def check_values(config: Hls4mlConfig, hls4ml: Any) -> None:
    """The backend is one hls4ml has and every precision string parses for it ("auto" included); raises
    BadInputError naming the place (what hls4ml would fail on late, with a Python error)."""
    where = config.source or "hls4ml"
    try:
        backend = hls4ml.backends.get_backend(config.backend)
    except Exception:
        names = ", ".join(hls4ml.backends.get_available_backends())
        raise BadInputError(f"{where}: hls4ml has no backend {config.backend!r} (backends: {names})") from None
    for place, text in precisions(config.hls_config or {}):
        try:
            backend.convert_precision_string(text)
        except Exception as exc:
            split = (
                " (quote it inside a YAML {...} mapping: a bare comma splits it)"
                if "<" in text and ">" not in text
                else ""
            )
            raise BadInputError(
                f"{where}: {place}: {text!r} is not a precision hls4ml reads, e.g. fixed<16,6>, ap_fixed<8,3>, "
                f"int<8>, float, auto{split} ({first_line(exc)})"
            ) from None


def config_notes(config: Hls4mlConfig, graph: Any) -> list[str]:
    """What hls4ml ignored in the user's config, one sentence each (the report puts the runner's label, which
    names the YAML, before each): top-level YAML keys, HLSConfig keys,
    Model keys it does not read, LayerName entries naming no layer of the converted model, LayerType
    entries naming no class in it, and settings a layer does not have."""
    if config.hls_config is None:
        return []
    notes = []
    if config.ignored:
        notes.append(f"keys of the YAML not used: {', '.join(config.ignored)} (MODEL itself is converted)")
    if config.unknown:
        notes.append(f"HLSConfig keys hls4ml does not read, ignored: {', '.join(config.unknown)}")
    model = config.hls_config.get("Model") or {}
    unknown = [str(key) for key in model if key not in MODEL_KEYS]
    if unknown:
        notes.append(
            f"Model keys hls4ml does not read, ignored: {', '.join(unknown)} "
            f"(it reads {', '.join(MODEL_KEYS[:4])}, ...)"
        )
    layers = graph.graph  # hls4ml layer name -> layer
    by_class: dict[str, list[Any]] = {}
    for layer in layers.values():
        by_class.setdefault(layer.class_name, []).append(layer)
    sections = (
        ("LayerName", "layer", {name: [layer] for name, layer in layers.items()}),
        ("LayerType", "layer class", by_class),
    )
    for section, what, targets in sections:
        for name, settings in (config.hls_config.get(section) or {}).items():
            matched = targets.get(str(name))
            if not matched:
                notes.append(f"{section}.{name} names no {what} of the converted model ({', '.join(targets)}); ignored")
                continue
            strange = _unknown_settings(settings, matched[0])
            if strange:
                notes.append(f"{section}.{name}: settings the layer does not have: {', '.join(strange)}")
    return notes


def _unknown_settings(settings: dict[str, Any], layer: Any) -> list[str]:
    """The keys of a LayerName/LayerType entry that name neither a setting hls4ml reads for every layer nor
    an attribute of `layer` (hls4ml sets key table_size as attribute table_size, TableSize too), and the
    Precision entries that name no type of it (table -> table_t)."""
    attributes = {attribute.name for attribute in layer.expected_attributes}
    strange = [
        str(key) for key in settings if key not in LAYER_KEYS and CAMEL.sub("_", str(key)).lower() not in attributes
    ]
    precision = settings.get("Precision")
    if isinstance(precision, dict):
        strange += [f"Precision.{key}" for key in precision if key != "default" and f"{key}_t" not in attributes]
    return strange
