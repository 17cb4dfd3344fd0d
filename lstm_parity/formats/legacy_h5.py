"""Reader for legacy Keras HDF5 model files (`model.save("x.h5")` by tf.keras 2.x or Keras 3).

Root attributes `keras_version` and `model_config`; group `model_weights` with `layer_names`,
one subgroup per layer with `weight_names` naming datasets relative to that subgroup. Weights
are taken in `weight_names` order (Keras' own loading order) and never matched by name.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from ..errors import BadInputError
from .safety import parse_json, read_dataset, read_name_list_attr, read_text_attr, resolve


def read_legacy_h5(file: Any, source: str) -> tuple[Any, str, dict[str, tuple[list[str], list[np.ndarray]]]]:
    """Read (model config JSON, keras_version, {layer name: (weight names, arrays)}) from an HDF5 file.

    `file` is a path or a binary file object. Raises BadInputError for unreadable or weights-less files.
    """
    try:
        handle = h5py.File(file, "r")
    except Exception as exc:
        raise BadInputError(f"{source}: not a readable HDF5 file ({_reason(exc)})") from None
    with handle:
        keras_version = read_text_attr(handle, "keras_version", source) or ""
        config_text = read_text_attr(handle, "model_config", source)
        if config_text is None:
            if read_name_list_attr(handle, "layer_names", source) is not None:
                raise BadInputError(
                    f"{source}: this is a weights-only file (model.save_weights); it has no model "
                    f"config, so there is no model to compute"
                )
            raise BadInputError(f"{source}: HDF5 file has no 'model_config' attribute; not a saved Keras model")
        model_config = parse_json(config_text, "model_config", source)
        if "model_weights" not in handle:
            raise BadInputError(f"{source}: the model was never built: the file has a config but no weights")
        group = resolve(handle, "model_weights", source)
        if not isinstance(group, h5py.Group):
            raise BadInputError(f"{source}: 'model_weights' is not a group")
        weights = read_weight_groups(group, source)
        return model_config, keras_version, weights


def read_weight_groups(group: h5py.Group, source: str) -> dict[str, tuple[list[str], list[np.ndarray]]]:
    """Read every layer's arrays listed by `layer_names`/`weight_names` under `group`."""
    layer_names = read_name_list_attr(group, "layer_names", source)
    if layer_names is None:
        raise BadInputError(f"{source}: weights group has no 'layer_names' attribute")
    weights: dict[str, tuple[list[str], list[np.ndarray]]] = {}
    for layer_name in layer_names:
        layer_group = resolve(group, layer_name, source)
        if not isinstance(layer_group, h5py.Group):
            raise BadInputError(f"{source}: weights of layer {layer_name!r} are not a group")
        names = read_name_list_attr(layer_group, "weight_names", source) or []
        arrays = [
            read_dataset(resolve(layer_group, name, source), f"layer {layer_name!r} weight {name!r}", source)
            for name in names
        ]
        weights[layer_name] = (names, arrays)
    return weights


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
