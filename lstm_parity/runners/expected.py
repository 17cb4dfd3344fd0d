"""Outputs produced elsewhere (a port, a device, another runtime run by hand), read row by row from
an `.npy`/`.npz` file or taken from arrays already in memory: the `--expected` side of a check."""

from __future__ import annotations

import numpy as np

from ..errors import BadInputError
from ..spec import ModelSpec
from ..streaming import ArrayRows
from .base import RunnerInfo


class ExpectedRunner:
    """The expected outputs as a runner: `predict` returns their rows [start, stop), one array per
    model output. `shapes` are the whole arrays' shapes, checked by the flow against the reference's."""

    def __init__(self, readers: list, label: str, path: str, opened: dict | None = None):
        self.readers, self.opened = readers, opened or {}
        self.shapes = [tuple(reader.shape) for reader in readers]
        self.info = RunnerInfo(kind="expected", label=label, path=path)

    def predict(self, inputs: list[np.ndarray], start: int, stop: int) -> list[np.ndarray]:
        return [np.asarray(reader.read(start, stop)) for reader in self.readers]

    def close(self) -> None:
        for reader in self.opened.values():
            reader.close()


def expected_from_arrays(spec: ModelSpec, arrays: list[np.ndarray], path: str = "expected") -> ExpectedRunner:
    """Arrays already loaded (one per model output, in order); raises BadInputError on a count mismatch."""
    if len(arrays) != len(spec.output_names):
        raise BadInputError(
            f"{spec.source}: the expected outputs are {len(arrays)} arrays, the model has "
            f"{len(spec.output_names)} outputs {spec.output_names}"
        )
    return ExpectedRunner([ArrayRows(np.asarray(a)) for a in arrays], "expected", path)


def expected_from_file(spec: ModelSpec, path: str) -> ExpectedRunner:
    """Memory-mapped rows of an `.npy` (one output) or `.npz` (keyed by output name or y0, y1, ...)."""
    from ..chunked_io import as_loaded, close_all, open_rows
    from ..cli_support import select_outputs

    found = open_rows(path)
    try:
        readers = select_outputs(spec, as_loaded(found), path)
    except BaseException:
        close_all(found)
        raise
    return ExpectedRunner(readers, "expected", path, found)
