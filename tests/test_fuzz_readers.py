"""Property-based fuzzing of the readers: mutated sample files (truncated, bytes flipped, chunks
spliced in) either load and compute or raise one of our own errors, never anything else.
2,000 cases in all, derandomized so a failure reproduces."""

from __future__ import annotations

import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLES
from lstm_parity.errors import LstmParityError
from lstm_parity.formats import open_model
from lstm_parity.reference.forward import forward

SOURCES = {
    name: (SAMPLES / name).read_bytes() for name in ("tutorial_keras2.h5", "tutorial_legacy.h5", "tutorial.keras")
}
X = np.load(SAMPLES / "tutorial.input.npy")
FOLDER = tempfile.mkdtemp(prefix="lstm-parity-fuzz-")
CASES = 1000  # per strategy below: 2 x 1000 = 2,000


@st.composite
def mutated(draw, names):
    name = draw(st.sampled_from(names))
    data = bytearray(SOURCES[name])
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "splice", "zero"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            for offset in range(draw(st.integers(1, 16))):
                if at + offset < len(data):
                    data[at + offset] ^= draw(st.integers(1, 255))
        elif kind == "splice":
            other = SOURCES[draw(st.sampled_from(sorted(SOURCES)))]
            start = draw(st.integers(0, len(other) - 1))
            data[at:at] = other[start : start + draw(st.integers(1, 512))]
        else:
            data[at : at + draw(st.integers(1, 256))] = bytes(min(256, len(data) - at))
    suffix = draw(st.sampled_from([".h5", ".keras", ".bin"]))
    return bytes(data), suffix


def _exercise(case) -> None:
    data, suffix = case
    path = os.path.join(FOLDER, "case" + suffix)
    with open(path, "wb") as handle:
        handle.write(data)
    saved = os.environ.get("LSTM_PARITY_READ_TIMEOUT")
    os.environ["LSTM_PARITY_READ_TIMEOUT"] = "2"  # about 1 in 100 mutated HDF5 files makes HDF5 spin forever
    try:
        spec = open_model(path)
        forward(spec, [X])
    except LstmParityError:
        pass
    finally:
        if saved is None:
            del os.environ["LSTM_PARITY_READ_TIMEOUT"]
        else:
            os.environ["LSTM_PARITY_READ_TIMEOUT"] = saved


FUZZ = settings(
    max_examples=CASES, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


@FUZZ
@given(mutated(["tutorial_keras2.h5", "tutorial_legacy.h5"]))
def test_mutated_hdf5_files_raise_only_our_errors(case):
    _exercise(case)


@FUZZ
@given(mutated(["tutorial.keras"]))
def test_mutated_keras_archives_raise_only_our_errors(case):
    _exercise(case)
