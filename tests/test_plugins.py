"""Plugins: the user's own NumPy code computes custom layers and Lambdas (`--plugin FILE.py`, check-all's
`plugins`, installed packages' entry points), and its Keras classes (`keras_objects`) let the Keras side load
the file for `check`. Models are built here with a custom Layer subclass (Keras 3 and tf_keras) and a Lambda
matched by name; the examples in examples/plugins/ are checked on models rebuilt with their classes and, when
../shared/corpus2 is present, on the real files they were written for."""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from conftest import ROOT, keras_module, randomize, write_npy
from lstm_parity.errors import UnsupportedError
from lstm_parity.formats import open_model
from lstm_parity.plugins import (
    AUTOLOAD_OFF,
    PluginSet,
    activate,
    computed_layers,
    files_in_force,
    forget_installed,
    layer,
    load_plugin_file,
    load_plugins,
    plugin_uses,
    plugins_in_use,
)
from lstm_parity.reference.forward import forward
from lstm_parity.report.json_report import SCHEMA_PATH

EXAMPLES = ROOT / "examples" / "plugins"
CORPUS2 = ROOT.parent / "shared" / "corpus2" / "models"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
TIME, FEATURES, UNITS = 5, 3, 4

# A custom layer, written once: the NumPy plugin and the Keras class (Keras 3 or tf_keras) of the same math.
GATED_SUM = """
import numpy as np
from lstm_parity.plugins import layer

@layer("GatedSum")
def gated_sum(inputs, weights, config):
    (x,) = inputs                                 # (batch, time, features)
    (w,) = weights                                # (features,)
    gate = 1.0 / (1.0 + np.exp(-(x @ w)))        # (batch, time)
    return (gate[..., None] * x).sum(axis=1)      # (batch, features)
"""
KERAS3_CLASS = """
def keras_objects():
    import keras
    from keras import ops

    class GatedSum(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(name="w", shape=(input_shape[-1],), initializer="random_normal")

        def call(self, x):
            gate = ops.sigmoid(ops.tensordot(x, self.w, axes=1))
            return ops.sum(gate[..., None] * x, axis=1)

    return {"GatedSum": GatedSum}
"""
TF_KERAS_CLASS = """
def keras_objects():
    import tensorflow as tf
    import tf_keras

    class GatedSum(tf_keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(name="w", shape=(input_shape[-1],), initializer="random_normal")

        def call(self, x):
            gate = tf.sigmoid(tf.tensordot(x, self.w, axes=1))
            return tf.reduce_sum(gate[..., None] * x, axis=1)

    return {"GatedSum": GatedSum}
"""


@pytest.fixture(autouse=True)
def no_plugins_left_behind():
    """Each test starts and ends with no plugin files in force and the entry points looked up afresh."""
    activate(PluginSet())
    forget_installed()
    yield
    activate(PluginSet())
    forget_installed()


def write_plugin(folder: Path, source: str, name: str = "my_layers.py") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def one_function(decorator: str, body: str, function: str = "computed") -> str:
    """A plugin file's text: one function, `decorator` on it, `body` its one line."""
    head = f"from lstm_parity.plugins import layer\n\n{decorator}\ndef {function}(inputs, weights, config):\n"
    return head + f"    {body}\n"


def one_line_error(result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstm-parity: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def gated_model(writer: str, plugin: Path, seed: int = 0):
    """Input (TIME, FEATURES) -> LSTM(UNITS, return_sequences) -> GatedSum -> Dense(2), built with the plugin
    file's own Keras class (the test's only copy of it), seeded random weights."""
    module = keras_module(writer)
    cls = load_plugin_file(str(plugin)).keras_dict()["GatedSum"]
    module.utils.set_random_seed(seed)
    inp = module.Input(shape=(TIME, FEATURES))
    x = module.layers.LSTM(UNITS, return_sequences=True)(inp)
    x = cls(name="gated")(x)
    model = module.Model(inp, module.layers.Dense(2, name="dense")(x))
    return randomize(model, seed)


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """The GatedSum model saved by Keras 3 (.keras, .h5) and tf_keras (.h5), with its plugin files and inputs."""
    folder = tmp_path_factory.mktemp("gated")
    plugins = {
        "k3": write_plugin(folder, GATED_SUM + KERAS3_CLASS, "gated_k3.py"),
        "k2": write_plugin(folder, GATED_SUM + TF_KERAS_CLASS, "gated_k2.py"),
    }
    x = np.random.default_rng(1).standard_normal((6, TIME, FEATURES)).astype(np.float32)
    files = {}
    for writer, suffix in (("k3-keras", ".keras"), ("k3-h5", ".h5"), ("k2-h5", "_k2.h5")):
        model = gated_model(writer, plugins[writer[:2]])
        path = folder / f"gated{suffix}"
        model.save(path)
        files[writer] = (path, np.asarray(model.predict(x, verbose=0)))
    return {"plugins": plugins, "files": files, "x": write_npy(folder, "x.npy", x), "folder": folder}


# ------------------------------------------------------------------------------------- computing with a plugin


@pytest.mark.parametrize("writer", ["k3-keras", "k3-h5", "k2-h5"])
def test_custom_layer_predicts_what_keras_predicts(gated, writer, run_cli, tmp_path):
    path, keras_outputs = gated["files"][writer]
    plugin = gated["plugins"][writer[:2]]
    without = run_cli("predict", path, gated["x"], "-o", tmp_path / "y.npy")
    one_line_error(without, 3, "'gated' (GatedSum)", "--plugin FILE.py")
    result = run_cli("predict", path, gated["x"], "-o", tmp_path / "y.npy", "--plugin", plugin)
    assert result.exit_code == 0, result.output
    ours = np.load(tmp_path / "y.npy")
    assert ours.dtype == np.float64 and ours.shape == keras_outputs.shape == (6, 2)
    assert np.max(np.abs(ours - keras_outputs)) < 1e-6


@pytest.mark.parametrize("writer", ["k3-keras", "k3-h5", "k2-h5"])
def test_check_passes_with_keras_objects_and_reports_the_plugin(gated, writer, run_cli, tmp_path):
    path, _ = gated["files"][writer]
    plugin = gated["plugins"][writer[:2]]
    report = tmp_path / "r.json"
    result = run_cli("check", path, gated["x"], "--plugin", plugin, "--json", report)
    assert result.exit_code == 0, result.output
    assert f"plugin      {plugin}: computed layer 'gated' (GatedSum) with gated_sum" in result.stdout
    data = json.loads(report.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["plugins"] == [
        {
            "source": str(plugin),
            "origin": "file",
            "sha256": hashlib.sha256(plugin.read_bytes()).hexdigest(),  # which code computed the report
            "layers": [{"layer": "gated", "class_name": "GatedSum", "function": "gated_sum"}],
        }
    ]
    assert data["keras"]["package"] == ("tf_keras" if writer == "k2-h5" else "keras")
    assert data["weights"]["identical"] and data["comparisons"][0]["outputs"][0]["max_abs_diff"] < 1e-6


def test_junit_and_the_terminal_view_name_the_plugin(gated, tmp_path, run_cli):
    from rich.console import Console

    from lstm_parity.check import run_check
    from lstm_parity.report.rich_report import render_check_rich

    path, _ = gated["files"]["k3-h5"]
    plugin = gated["plugins"]["k3"]
    junit = tmp_path / "r.xml"
    assert run_cli("check", path, gated["x"], "--plugin", plugin, "--junit", junit, "-q").exit_code == 0
    root = ET.parse(junit).getroot()
    (prop,) = root.iter("property")
    assert (
        prop.get("name") == "plugin"
        and prop.get("value") == f"{plugin}: computed layer 'gated' (GatedSum) with gated_sum"
    )
    with plugins_in_use([str(plugin)]):
        report = run_check(open_model(str(path)), [np.load(gated["x"])], keras=False)
    console = Console(record=True, width=100, color_system=None)
    render_check_rich(report, console)
    text = " ".join(console.export_text().split())
    assert f"plugin {plugin}: computed layer 'gated' (GatedSum) with gated_sum" in text


def test_a_plugin_without_keras_objects_says_how_to_let_keras_load_the_file(gated, run_cli, tmp_path):
    path, _ = gated["files"]["k3-keras"]
    numpy_only = write_plugin(tmp_path, GATED_SUM)
    one_line_error(
        run_cli("check", path, gated["x"], "--plugin", numpy_only),
        4,
        "cannot load the file",
        "plugins compute GatedSum for the reference",
        "keras_objects = {'GatedSum': GatedSum}",
        "--no-keras",
    )
    result = run_cli("check", path, gated["x"], "--plugin", numpy_only, "--no-keras", "--json", "-")
    assert result.exit_code == 0 and json.loads(result.stdout)["plugins"][0]["layers"][0]["layer"] == "gated"


def test_inspect_and_trace_compute_through_the_plugin(gated, run_cli, tmp_path):
    path, _ = gated["files"]["k3-h5"]
    plugin = gated["plugins"]["k3"]
    info = json.loads(run_cli("inspect", path, "--json", "--plugin", plugin).stdout)
    row = next(each for each in info["layers"] if each["name"] == "gated")
    assert info["supported"] and row["supported"] and row["output_shapes"] == [[None, UNITS]]
    assert not json.loads(run_cli("inspect", path, "--json").stdout)["supported"]
    trace_file = tmp_path / "t.npz"
    assert run_cli("trace", path, gated["x"], "--sample", "2", "-o", trace_file, "--plugin", plugin).exit_code == 0
    with plugins_in_use([str(plugin)]):
        spec = open_model(str(path))
        layer_outputs = forward(spec, [np.load(gated["x"])], record=True).layer_outputs
    traced = np.load(trace_file)["gated/output0"]  # sample 2 alone: the same numbers to the last bits
    assert traced.shape == (UNITS,) and np.allclose(traced, layer_outputs["gated"][0][2], rtol=1e-12, atol=1e-14)


def test_plugin_output_is_cast_to_the_reference_dtype(gated, tmp_path):
    path, _ = gated["files"]["k3-h5"]
    plugin = write_plugin(tmp_path, GATED_SUM.replace("return (gate", "return np.float16(1) * (gate"))
    with plugins_in_use([str(plugin)]):
        spec = open_model(str(path))
        x = np.load(gated["x"])
        for dtype in (np.float64, np.float32):
            gated_out = forward(spec, [x], dtype=dtype, record=True).layer_outputs["gated"][0]
            assert gated_out.dtype == dtype


def test_a_lambda_is_matched_by_name_and_nothing_from_the_file_runs(tmp_path, run_cli):
    keras = keras_module("k3-keras")
    marker = tmp_path / "the_file_ran.txt"
    keras.utils.set_random_seed(0)
    inp = keras.Input((TIME, FEATURES))
    x = keras.layers.LSTM(UNITS, return_sequences=True)(inp)
    marked = str(marker)
    x = keras.layers.Lambda(lambda t: t * 2.0 + 1.0 + 0.0 * len(open(marked, "a").name), name="affine")(x)  # noqa: SIM115
    x = keras.layers.Lambda(lambda t: t * 0.5, name="halve")(x)
    model = randomize(keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(x))))
    path = tmp_path / "lambda.keras"
    model.save(path)
    x_path = write_npy(tmp_path, "x.npy", np.random.default_rng(2).standard_normal((4, TIME, FEATURES), np.float32))
    keras_outputs = np.asarray(model.predict(np.load(x_path), verbose=0))
    marker.unlink()  # Keras ran the lambda while building and predicting; lstm-parity never may
    plugin = write_plugin(
        tmp_path,
        """
        from lstm_parity.plugins import layer

        @layer("Lambda", name="affine")
        def affine(inputs, weights, config):
            return inputs[0] * 2.0 + 1.0
        """,
    )
    one_line_error(run_cli("predict", path, x_path, "-o", tmp_path / "y.npy", "--plugin", plugin), 3, "'halve'")
    halve = write_plugin(
        tmp_path,
        """
        from lstm_parity.plugins import layer

        @layer("Lambda", name="halve")
        def halve(inputs, weights, config):
            return inputs[0] * 0.5
        """,
        "halve.py",
    )
    result = run_cli("predict", path, x_path, "-o", tmp_path / "y.npy", "--plugin", plugin, "--plugin", halve)
    assert result.exit_code == 0, result.output
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - keras_outputs)) < 1e-6
    assert not marker.exists()
    # The Keras side of a Lambda still runs the file's code: only with --trust-model-code.
    args = ("check", path, x_path, "--plugin", plugin, "--plugin", halve)
    one_line_error(run_cli(*args), 4, "refusing to let Keras load Lambda layer(s)", "--trust-model-code")
    assert not marker.exists()


def test_a_lambda_checks_against_keras_with_trusted_code(tmp_path, run_cli):
    keras = keras_module("k3-keras")
    keras.utils.set_random_seed(0)
    inp = keras.Input((TIME, FEATURES))
    x = keras.layers.Lambda(lambda t: t * 2.0 + 1.0, name="affine")(keras.layers.LSTM(UNITS)(inp))
    path = tmp_path / "lambda.keras"
    randomize(keras.Model(inp, keras.layers.Dense(2)(x))).save(path)
    plugin = write_plugin(
        tmp_path,
        """
        from lstm_parity.plugins import layer

        @layer("Lambda", name="affine")
        def affine(inputs, weights, config):
            return inputs[0] * 2.0 + 1.0
        """,
    )
    result = run_cli("check", path, "--plugin", plugin, "--trust-model-code", "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["plugins"][0]["layers"] == [{"layer": "affine", "class_name": "Lambda", "function": "affine"}]


# ------------------------------------------------------------------------------ a plugin that fails: exit 3


def _broken(tmp_path: Path, body: str) -> Path:
    return write_plugin(
        tmp_path,
        f"""
        import numpy as np
        from lstm_parity.plugins import layer

        @layer("GatedSum")
        def broken(inputs, weights, config):
            x = inputs[0]
            {body}
        """,
        "broken.py",
    )


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ("return 1 / 0", ("raised ZeroDivisionError: division by zero (at broken.py:8)",)),  # the line in the plugin
        ("raise SystemExit('boom')", ("raised SystemExit: boom (at broken.py:8)",)),  # not an exit of lstm-parity
        ("raise RuntimeError()", ("raised RuntimeError (no message) (at broken.py:8)",)),
        # inputs and weights are the reference's own arrays: read-only, so a plugin cannot corrupt them
        ("x *= 2; return x.sum(axis=1)", ("raised ValueError", "read-only: copy one (x = x.copy())")),
        ("weights[0][:] = 0; return x.sum(axis=1)", ("raised ValueError", "read-only")),
        ("return x.sum(axis=1)[:1]", ("has shape (1, 4)", "axis 0 must be the batch (6 rows")),
        ("return {'y': x}", ("its output is dict, not an array",)),
        ("return x.sum(axis=1) * 1j", ("has dtype complex128; return real numbers",)),
        ("return []", ("returned an empty list",)),
        # the next layer (Dense, kernel (4, 2)) cannot take 5 features: the plugin's failure, named as such
        (
            "return np.ones((x.shape[0], 5))",
            (
                "plugin ",
                "broken.py (broken) computed layer 'gated' (GatedSum) an output the next layer cannot take",
                "layer 'dense' (Dense)",
            ),
        ),
    ],
)
def test_a_failing_plugin_is_one_line_and_exit_3_naming_plugin_and_layer(gated, tmp_path, run_cli, body, fragments):
    path, _ = gated["files"]["k3-keras"]
    plugin = _broken(tmp_path, body)
    line = one_line_error(
        run_cli("predict", path, gated["x"], "-o", tmp_path / "y.npy", "--plugin", plugin), 3, *fragments
    )
    assert str(plugin) in line and "'gated'" in line
    assert not (tmp_path / "y.npy").exists()


def test_a_shape_the_next_layers_accept_is_refused_by_check_against_keras_shape(gated, tmp_path, run_cli):
    """Returning the whole sequence (batch, time, features) instead of (batch, features): Dense takes it (on the
    last axis), so `predict` cannot know; `check` compares with the shape Keras computes for the layer."""
    path, _ = gated["files"]["k3-keras"]
    source = GATED_SUM.replace("return (gate[..., None] * x).sum(axis=1)", "return gate[..., None] * x")
    plugin = write_plugin(tmp_path, source + KERAS3_CLASS)
    assert run_cli("predict", path, gated["x"], "-o", tmp_path / "y.npy", "--plugin", plugin).exit_code == 0
    assert np.load(tmp_path / "y.npy").shape == (6, TIME, 2)
    one_line_error(
        run_cli("check", path, gated["x"], "--plugin", plugin),
        3,
        "layer 'gated' (GatedSum): plugin ",
        "output 0 has shape (6, 5, 4); Keras computes (None, 4) for this layer",  # on the real input's 6 rows
    )


def test_a_plugin_returning_fewer_outputs_than_the_model_takes(tmp_path, run_cli):
    plugin = write_plugin(
        tmp_path,
        """
        from lstm_parity.plugins import layer

        @layer("Halves")
        def halves(inputs, weights, config):
            x = inputs[0]
            return [x[..., :2], x[..., 2:]]

        def keras_objects():
            import keras

            class Halves(keras.layers.Layer):
                def call(self, x):
                    return [x[..., :2], x[..., 2:]]

            return {"Halves": Halves}
        """,
    )
    keras = keras_module("k3-keras")
    cls = load_plugin_file(str(plugin)).keras_dict()["Halves"]
    inp = keras.Input((TIME, FEATURES))
    first, second = cls(name="halves")(keras.layers.LSTM(UNITS, return_sequences=True)(inp))
    outputs = keras.layers.Concatenate()([keras.layers.LSTM(2)(first), keras.layers.LSTM(3)(second)])
    path = tmp_path / "halves.keras"
    randomize(keras.Model(inp, outputs)).save(path)
    assert run_cli("check", path, "--plugin", plugin).exit_code == 0
    one_output = write_plugin(
        tmp_path, plugin.read_text().replace("return [x[..., :2], x[..., 2:]]\n", "return x\n", 1)
    )
    one_line_error(
        run_cli("predict", path, "-o", tmp_path / "y.npy", "--plugin", one_output),
        3,
        "layer 'halves' (Halves): plugin ",
        "returned 1 array(s); the model takes output 1 of this layer",
    )


# ------------------------------------------------------------------------------ loading: exit 2 naming the file


@pytest.mark.parametrize(
    ("source", "fragments"),
    [
        ("def broken(:\n", ("the plugin does not compile", "(line 1)")),
        ("import no_such_module_here\n", ("loading the plugin raised ModuleNotFoundError",)),
        ("raise SystemExit(3)\n", ("loading the plugin raised SystemExit",)),
        ("x = 1\n", ("the plugin registers no layer",)),
        (
            "from lstm_parity.plugins import layer\n@layer('Lambda')\ndef f(i, w, c):\n    return i[0]\n",
            ('@layer("Lambda") needs name="..."',),
        ),
        ("keras_objects = [1, 2]\n", ("keras_objects must be a dict",)),
    ],
)
def test_a_plugin_file_that_cannot_be_loaded_is_exit_2_naming_it(gated, tmp_path, run_cli, source, fragments):
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text(source)
    path, _ = gated["files"]["k3-keras"]
    for command in (("predict", path, "-o", tmp_path / "y.npy"), ("inspect", path), ("check", path)):
        line = one_line_error(run_cli(*command, "--plugin", plugin), 2, *fragments)
        assert line.startswith(f"lstm-parity: error: {plugin}: ")


def test_missing_plugin_file_and_two_files_claiming_one_class(gated, tmp_path, run_cli):
    path, _ = gated["files"]["k3-keras"]
    one_line_error(run_cli("inspect", path, "--plugin", tmp_path / "nope.py"), 2, "nope.py: no such plugin file")
    one_line_error(run_cli("inspect", path, "--plugin", tmp_path), 2, f"{tmp_path}: a folder, not a plugin file")
    first = write_plugin(tmp_path, GATED_SUM, "first.py")
    second = write_plugin(tmp_path, GATED_SUM, "second.py")
    one_line_error(
        run_cli("inspect", path, "--plugin", first, "--plugin", second),
        2,
        f"{first} and {second}: two functions register GatedSum",
    )
    assert run_cli("inspect", path, "--plugin", first, "--plugin", first).exit_code == 0  # one file named twice


def test_two_plugin_files_with_one_stem_are_separate_modules(tmp_path):
    for folder, factor in (("a", 2.0), ("b", 3.0)):
        (tmp_path / folder).mkdir()
        write_plugin(
            tmp_path / folder,
            f"""
            from lstm_parity.plugins import layer

            @layer("Lambda", name="scale_{folder}")
            def scale(inputs, weights, config):
                return inputs[0] * {factor}
            """,
        )
    a = load_plugin_file(str(tmp_path / "a" / "my_layers.py"))
    b = load_plugin_file(str(tmp_path / "b" / "my_layers.py"))
    assert a.layers[0].function.__module__ != b.layers[0].function.__module__
    assert a.layers[0].function([np.ones(2)], [], {})[0] == 2.0 and b.layers[0].function([np.ones(2)], [], {})[0] == 3.0


def test_layer_decorator_registers_and_refuses_bad_registrations():
    @layer("Lambda", name="a")
    @layer("Lambda", name="b")
    def f(inputs, weights, config):
        return inputs[0]

    assert f.lstm_parity_layers == [("Lambda", "b"), ("Lambda", "a")]
    for bad in (lambda: layer(""), lambda: layer("X", name=""), lambda: layer("Lambda"), lambda: layer("X")(3)):
        with pytest.raises(TypeError):
            bad()


# ------------------------------------------------------------------------------ entry points and check-all


def _install_dist(site: Path, entry_value: str, module: str = "gated_sum_plugin_layers", source: str = "") -> None:
    """A tiny installed distribution: dist-info with an entry point in the group lstm_parity.plugins, and the
    module `module` (by default the GatedSum plugin, with a Dense registration that must never be used)."""
    info = site / f"{module}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[lstm_parity.plugins]\ngated = {entry_value}\n")
    # an installed package computes only classes the reference lacks: its Dense is never used
    dense = '\n@layer("Dense")\ndef not_this_one(inputs, weights, config):\n    raise AssertionError("ran")\n'
    (site / f"{module}.py").write_text(textwrap.dedent(source) if source else GATED_SUM + dense + KERAS3_CLASS)


def test_installed_packages_register_plugins_through_the_entry_point_group(gated, tmp_path, run_cli, monkeypatch):
    site = tmp_path / "site"
    _install_dist(site, "gated_sum_plugin_layers")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "gated_sum_plugin_layers", raising=False)
    path, keras_outputs = gated["files"]["k3-keras"]
    result = run_cli("check", path, gated["x"], "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["plugins"] == [
        {
            "source": "entry point gated = gated_sum_plugin_layers (gated-sum-plugin-layers 1.0)",
            "origin": "entry point",
            "sha256": "",  # an installed package: no single file to hash
            "layers": [{"layer": "gated", "class_name": "GatedSum", "function": "gated_sum"}],
        }
    ]
    # a file the user names wins over an installed plugin for the same class
    override = _broken(tmp_path, "return 1 / 0")
    one_line_error(run_cli("predict", path, gated["x"], "-o", tmp_path / "y.npy", "--plugin", override), 3, "broken")
    monkeypatch.setenv(AUTOLOAD_OFF, "1")
    forget_installed()
    one_line_error(run_cli("predict", path, gated["x"], "-o", tmp_path / "y.npy"), 3, "'gated' (GatedSum)")


def test_an_entry_point_that_fails_to_load_is_exit_2_naming_it(gated, tmp_path, run_cli, monkeypatch):
    site = tmp_path / "site"
    _install_dist(site, "no_such_plugin_module")
    monkeypatch.syspath_prepend(str(site))
    path, _ = gated["files"]["k3-keras"]
    one_line_error(
        run_cli("predict", path, gated["x"], "-o", tmp_path / "y.npy"),
        2,
        "entry point gated = no_such_plugin_module (gated-sum-plugin-layers 1.0): loading the plugin raised",
        f"or set {AUTOLOAD_OFF}=1",  # how to go on when the broken package is not yours
    )


def test_check_all_takes_plugins_relative_to_the_toml(gated, tmp_path, run_cli):
    folder = tmp_path / "ci"
    (folder / "plugins").mkdir(parents=True)
    (folder / "plugins" / "gated.py").write_text(GATED_SUM + KERAS3_CLASS)
    path, _ = gated["files"]["k3-keras"]
    (folder / "models.toml").write_text(
        "[tool.lstm-parity]\nsamples = 3\n"
        f'[[tool.lstm-parity.models]]\nname = "with plugin"\npath = "{path}"\nplugins = ["plugins/gated.py"]\n'
        f'[[tool.lstm-parity.models]]\nname = "without"\npath = "{path}"\nno_keras = true\n'
    )
    result = run_cli("check-all", folder / "models.toml", "--json", "-")
    data = json.loads(result.stdout)
    jsonschema.validate(data, SCHEMA)
    with_plugin, without = data["models"]
    assert with_plugin["exit_code"] == 0 and with_plugin["report"]["plugins"][0]["source"] == str(
        folder / "plugins" / "gated.py"
    )
    assert without["exit_code"] == 3 and "'gated' (GatedSum)" in without["error"]  # plugins are per model
    assert result.exit_code == 3


def test_the_keras_backend_child_loads_the_plugins_keras_classes_and_no_unneeded_entry_point(
    gated, tmp_path, run_cli, monkeypatch
):
    """An installed plugin that fails to load is looked up by neither the check nor the keras:* child when the
    named files compute every class the reference lacks."""
    site = tmp_path / "site"
    _install_dist(site, "no_such_plugin_module")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))  # the child sees it too
    path, _ = gated["files"]["k3-keras"]
    result = run_cli(
        "check",
        path,
        gated["x"],
        "--no-keras",
        "--against",
        "keras:tensorflow",
        "--plugin",
        gated["plugins"]["k3"],
        "--json",
        "-",
    )
    assert result.exit_code == 0, result.output
    comparison = json.loads(result.stdout)["comparisons"][0]
    assert comparison["against"] == "keras:tensorflow" and comparison["outputs"][0]["max_abs_diff"] < 1e-6


def test_upgrade_takes_plugins_and_refuses_a_custom_class_it_cannot_rebuild(gated, tmp_path, run_cli):
    path, _ = gated["files"]["k2-h5"]
    bad = write_plugin(tmp_path, "x = 1\n", "bad.py")
    one_line_error(run_cli("upgrade", path, tmp_path / "new.keras", "--plugin", bad), 2, "registers no layer")
    result = run_cli("upgrade", path, tmp_path / "new.keras", "--plugin", gated["plugins"]["k2"])
    one_line_error(result, 3, "'GatedSum'")  # Keras 3 gets no class to rebuild it with: nothing written
    assert not (tmp_path / "new.keras").exists()


def test_library_use_scopes_plugins_to_the_block(gated):
    path, keras_outputs = gated["files"]["k3-h5"]
    spec = open_model(str(path))
    x = np.load(gated["x"])
    plugin = gated["plugins"]["k3"]
    with plugins_in_use([str(plugin)]):
        (use,) = plugin_uses(computed_layers(spec))
        assert use.layers == (("gated", "GatedSum", "gated_sum"),)
        assert use.sha256 == hashlib.sha256(plugin.read_bytes()).hexdigest()  # which code computed the report
        assert np.max(np.abs(forward(spec, [x]).outputs[0] - keras_outputs)) < 1e-6
    with pytest.raises(UnsupportedError):
        forward(spec, [x])
    # a file the user names may compute even a class the reference implements (a custom class named like one)
    zeros = write_plugin(
        gated["folder"],
        GATED_SUM
        + '\n@layer("Dense", name="dense")\ndef zeros(inputs, weights, config):\n    return 0 * inputs[0][:, :2]\n',
        "zeros.py",
    )
    with plugins_in_use([str(zeros)]):
        assert not forward(spec, [x]).outputs[0].any()


# ------------------------------------------------------------------------------ more models: Scale, Split, Mix

# One more custom class, x * w per feature, with its Keras class (Keras 3); Split returns two arrays; Mix is called
# with a tensor keyword argument. AFFINE computes the Lambda named "affine".
SCALE = """
from lstm_parity.plugins import layer

@layer("Scale")
def scale(inputs, weights, config):
    return inputs[0] * weights[0]                 # (batch, ..., features) * (features,)

@layer("Split")
def split(inputs, weights, config):
    return [inputs[0][..., :2], inputs[0][..., 2:]]

def keras_objects():
    import keras

    class Scale(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(name="w", shape=(input_shape[-1],), initializer="random_normal")

        def call(self, x):
            return x * self.w

        def compute_output_shape(self, input_shape):  # TimeDistributed asks
            return input_shape

    class Split(keras.layers.Layer):
        def call(self, x):
            return [x[..., :2], x[..., 2:]]

    class Mix(keras.layers.Layer):
        def call(self, x, other=None):
            return x + other

    return {"Scale": Scale, "Split": Split, "Mix": Mix}
"""
AFFINE = """
from lstm_parity.plugins import layer

@layer("Lambda", name="affine")
def affine(inputs, weights, config):
    return inputs[0] * 2.0 + 1.0
"""


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    """Keras 3 models with Scale, Split, Mix and a Lambda (each saved as .keras, with Keras' outputs on `x`):
    lambda: LSTM -> Scale -> Lambda affine -> LSTM; td: TimeDistributed(Scale named inner_scale);
    masked: Masking -> LSTM -> Scale -> LSTM; split: Split's two arrays are the model's outputs;
    kwargs: Mix called as mix(a, other=b); open: LSTM -> Scale -> LSTM on any number of timesteps."""
    keras = keras_module("k3-keras")
    folder = tmp_path_factory.mktemp("scaled")
    plugin = write_plugin(folder, SCALE, "scale.py")
    classes = load_plugin_file(str(plugin)).keras_dict()
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, TIME, FEATURES)).astype(np.float32)
    x[:2, 3:] = 0.0  # masked steps for the Masking model

    def lstm(units: int = UNITS, sequences: bool = True):
        return keras.layers.LSTM(units, return_sequences=sequences)

    def lambda_model(inp):
        y = keras.layers.Lambda(lambda t: t * 2.0 + 1.0, name="affine")(classes["Scale"](name="scale")(lstm()(inp)))
        return lstm(2, False)(y)

    def mix_model(inp):
        return lstm(2, False)(classes["Mix"](name="mix")(lstm()(inp), other=lstm()(inp)))

    makers = {
        "lambda": lambda_model,
        "td": lambda inp: lstm(2, False)(
            keras.layers.TimeDistributed(classes["Scale"](name="inner_scale"), name="td")(lstm()(inp))
        ),
        "masked": lambda inp: lstm(2, False)(classes["Scale"](name="scale")(lstm()(keras.layers.Masking()(inp)))),
        "split": lambda inp: classes["Split"](name="split")(lstm(sequences=False)(inp)),
        "kwargs": mix_model,
        "open": lambda inp: lstm(2, False)(classes["Scale"](name="scale")(lstm()(inp))),
    }
    files = {}
    for index, (name, make) in enumerate(makers.items()):
        keras.utils.set_random_seed(index)
        inp = keras.Input((None if name == "open" else TIME, FEATURES))
        model = randomize(keras.Model(inp, make(inp)), index)
        path = folder / f"{name}.keras"
        model.save(path)
        files[name] = (path, [np.asarray(y) for y in model(x)] if name == "split" else np.asarray(model(x)))
    return {"files": files, "plugin": plugin, "x": write_npy(folder, "x.npy", x), "folder": folder}


def test_a_wrapped_layer_is_computed_and_reported_under_the_name_the_reference_gives_it(scaled, tmp_path, run_cli):
    """TimeDistributed's inner layer is 'td/inner' for the reference; a registration by that name or by the
    name in the inner config computes it, and the report names the layer the plugin computed."""
    path, keras_outputs = scaled["files"]["td"]
    for index, name in enumerate(("td/inner", "inner_scale")):
        plugin = write_plugin(
            tmp_path,
            f"""
            from lstm_parity.plugins import layer

            @layer("Scale", name="{name}")
            def inner(inputs, weights, config):
                return inputs[0] * weights[0]
            """,
            f"inner{index}.py",
        )
        result = run_cli(
            "check",
            path,
            scaled["x"],
            "--plugin",
            plugin,
            "--no-keras",
            "--json",
            "-",
            "--save-outputs",
            tmp_path / name.replace("/", "_"),
        )
        assert result.exit_code == 0, result.output
        layers = json.loads(result.stdout)["plugins"][0]["layers"]
        assert layers == [{"layer": "td/inner", "class_name": "Scale", "function": "inner"}]
        ours = np.load(tmp_path / name.replace("/", "_") / "reference.npy")
        assert np.max(np.abs(ours - keras_outputs)) < 1e-6


def test_a_plugin_output_that_does_not_fit_is_its_failure_even_as_a_model_output(scaled, tmp_path, run_cli):
    path, keras_outputs = scaled["files"]["split"]
    y = tmp_path / "y.npz"
    assert run_cli("predict", path, scaled["x"], "-o", y, "--plugin", scaled["plugin"]).exit_code == 0
    with np.load(y) as ours:
        assert all(np.max(np.abs(ours[f"y{i}"] - keras_outputs[i])) < 1e-6 for i in (0, 1))
    one = write_plugin(tmp_path, SCALE.replace("return [inputs[0][..., :2], inputs[0][..., 2:]]", "return inputs[0]"))
    one_line_error(
        run_cli("predict", path, scaled["x"], "-o", y, "--plugin", one),
        3,
        "layer 'split' (Split): plugin ",
        "returned too few arrays; the model's output is output 1 of this layer",
    )


def test_a_call_with_tensor_keywords_cannot_reach_a_plugin_and_the_message_says_so(scaled, tmp_path, run_cli):
    path, _ = scaled["files"]["kwargs"]
    plugin = write_plugin(
        tmp_path,
        one_function('@layer("Mix")', "return inputs[0]"),
    )
    one_line_error(
        run_cli("predict", path, scaled["x"], "-o", tmp_path / "y.npy", "--plugin", plugin),
        3,
        "layer 'mix' (Mix): plugin ",
        "tensor keyword arguments ['other']",
        "a plugin receives only the call's positional inputs",
    )


def test_a_mask_reaching_a_plugin_is_noted(scaled, tmp_path, run_cli):
    """Masking -> LSTM -> Scale: Keras gives Scale (no supports_masking) no mask and passes none on, as the
    plugin does; predict says so on stderr, check in its notes."""
    path, keras_outputs = scaled["files"]["masked"]
    result = run_cli("predict", path, scaled["x"], "-o", tmp_path / "y.npy", "--plugin", scaled["plugin"])
    assert result.exit_code == 0, result.output
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - keras_outputs)) < 1e-6
    assert result.stderr.startswith("lstm-parity: note: a Keras mask reaches layer 'scale' (Scale); plugin ")
    assert "gets no mask and passes none on" in result.stderr
    unmasked, _ = scaled["files"]["lambda"]
    both = write_plugin(tmp_path, SCALE + AFFINE, "both.py")
    result = run_cli("predict", unmasked, scaled["x"], "-o", tmp_path / "y.npy", "--plugin", both)
    assert result.exit_code == 0 and result.stderr == ""


def test_keras_objects_advice_only_when_keras_asked_for_the_classes(scaled, tmp_path, run_cli):
    """A Lambda without --trust-model-code stops before Keras asks for classes: no advice to add keras_objects,
    which the plugin has; check-all's trust_model_code key is the way there."""
    path, _ = scaled["files"]["lambda"]
    both = write_plugin(tmp_path, SCALE + AFFINE, "both.py")
    line = one_line_error(
        run_cli("check", path, scaled["x"], "--plugin", both),
        4,
        "refusing to let Keras load Lambda layer(s) ['affine']",
        "check-all: trust_model_code = true",
    )
    assert "keras_objects" not in line
    (tmp_path / "models.toml").write_text(
        f'[tool.lstm-parity]\nplugins = ["both.py"]\ninput = "{scaled["x"]}"\n'
        f'[[tool.lstm-parity.models]]\nname = "trusted"\npath = "{path}"\ntrust_model_code = true\n'
        f'[[tool.lstm-parity.models]]\nname = "untrusted"\npath = "{path}"\ntrust_model_code = "yes"\n'
    )
    result = run_cli("check-all", tmp_path / "models.toml", "--json", "-")
    trusted, untrusted = json.loads(result.stdout)["models"]
    assert trusted["exit_code"] == 0, trusted
    assert trusted["report"]["comparisons"][0]["outputs"][0]["max_abs_diff"] < 1e-6
    assert untrusted["exit_code"] == 4 and "trust_model_code = true" in untrusted["error"]  # TOML true only


def test_installed_plugins_never_compute_a_lambda_and_predict_names_what_they_computed(
    scaled, tmp_path, run_cli, monkeypatch
):
    site = tmp_path / "site"
    _install_dist(site, "scale_plugin_layers", "scale_plugin_layers", SCALE + AFFINE)  # its Lambda: never used
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "scale_plugin_layers", raising=False)
    path, keras_outputs = scaled["files"]["lambda"]
    one_line_error(run_cli("predict", path, scaled["x"], "-o", tmp_path / "y.npy"), 3, "'affine' (Lambda)")
    affine = write_plugin(tmp_path, AFFINE, "affine.py")
    result = run_cli("predict", path, scaled["x"], "-o", tmp_path / "y.npy", "--plugin", affine)
    assert result.exit_code == 0, result.output
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - keras_outputs)) < 1e-6
    assert result.stderr == (
        "lstm-parity: note: layer 'scale' (Scale) was computed by an installed plugin: entry point gated = "
        "scale_plugin_layers (scale-plugin-layers 1.0) (scale)\n"
    )


# ------------------------------------------------------------------------------ what a plugin may not do or see


def test_check_questions_a_plugin_on_the_real_input_only(scaled, gated, tmp_path, run_cli):
    """On a model of any length, check compares the plugin's outputs with Keras' shapes as it computes the
    user's input (5 timesteps), never on inputs of its own; more arrays than Keras' layer returns are refused."""
    path, _ = scaled["files"]["open"]
    needs_four = write_plugin(
        tmp_path,
        SCALE.replace(
            "    return inputs[0] * weights[0]",
            "    if inputs[0].shape[1] < 4:\n        raise ValueError('needs at least 4 timesteps')\n"
            "    return inputs[0] * weights[0]",
        ),
    )
    result = run_cli("check", path, scaled["x"], "--plugin", needs_four, "--json", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["comparisons"][0]["outputs"][0]["max_abs_diff"] < 1e-6
    path, _ = gated["files"]["k3-keras"]
    two = GATED_SUM.replace(
        "return (gate[..., None] * x).sum(axis=1)", "return [(gate[..., None] * x).sum(axis=1)] * 2"
    )
    extra = write_plugin(tmp_path, two + KERAS3_CLASS, "extra.py")
    assert run_cli("predict", path, gated["x"], "-o", tmp_path / "y.npy", "--plugin", extra).exit_code == 0
    one_line_error(
        run_cli("check", path, gated["x"], "--plugin", extra),
        3,
        "layer 'gated' (GatedSum): plugin ",
        "returned 2 array(s); Keras computes 1 output(s) for this layer",
    )


def test_inspect_names_the_plugin_of_each_layer_and_why_shapes_are_unknown(gated, tmp_path, run_cli):
    path, _ = gated["files"]["k3-keras"]
    failing = write_plugin(tmp_path, one_function('@layer("GatedSum")', "raise ValueError('not on these')"))
    info = json.loads(run_cli("inspect", path, "--json", "--plugin", failing).stdout)
    row = next(each for each in info["layers"] if each["name"] == "gated")
    assert row["supported"] and row["plugins"] == [f"{failing} (computed)"] and row["output_shapes"] == []
    assert "raised ValueError: not on these" in info["shapes_problem"]
    text = run_cli("inspect", path, "--plugin", failing).stdout
    assert f"computed by plugin {failing} (computed)" in text and "output shapes unknown: " in text
    info = json.loads(run_cli("inspect", path, "--json", "--plugin", gated["plugins"]["k3"]).stdout)
    assert info["shapes_problem"] is None


def test_a_plugin_cannot_alias_the_arrays_around_it(gated):
    """Returning an input as it is gives the next layers a copy of their own (writable, not the previous layer's
    output), and the spec's weights stay the file's."""
    path, _ = gated["files"]["k3-h5"]
    identity = write_plugin(
        gated["folder"],
        one_function('@layer("GatedSum")', "return inputs[0]"),
        "identity.py",
    )
    spec = open_model(str(path))
    with plugins_in_use([str(identity)]):
        outputs = forward(spec, [np.load(gated["x"])], record=True).layer_outputs
    lstm_name = next(each.name for each in spec.layers if each.class_name == "LSTM")
    (lstm_out,), (gated_out,) = outputs[lstm_name], outputs["gated"]
    assert np.array_equal(lstm_out, gated_out) and not np.shares_memory(lstm_out, gated_out)
    assert gated_out.flags.writeable and lstm_out.flags.writeable


def test_predict_trace_and_dump_never_overwrite_a_plugin_file(gated, run_cli):
    path, _ = gated["files"]["k3-keras"]
    plugin = gated["plugins"]["k3"]
    before = plugin.read_bytes()
    for command in ("predict", "trace"):
        one_line_error(
            run_cli(command, path, gated["x"], "-o", plugin, "--plugin", plugin), 2, "refusing to overwrite an input"
        )
    for fmt in ("json", "npz", "c"):
        one_line_error(
            run_cli("dump", path, "-o", plugin, "--format", fmt, "--plugin", plugin),
            2,
            "refusing to overwrite an input",
        )
    one_line_error(
        run_cli("vectors", path, gated["x"], "-o", plugin.parent, "--save-inputs", plugin, "--plugin", plugin),
        2,
        "refusing to overwrite an input",
    )
    assert plugin.read_bytes() == before


def test_vectors_blames_a_plugin_whose_output_the_next_layer_cannot_take(gated, tmp_path, run_cli):
    path, _ = gated["files"]["k3-keras"]
    plugin = _broken(tmp_path, "return np.ones((x.shape[0], 5))")
    line = one_line_error(
        run_cli("vectors", path, gated["x"], "-o", tmp_path / "golden", "--plugin", plugin),
        3,
        "computed layer 'gated' (GatedSum) an output the next layer cannot take",
    )
    assert str(plugin) in line and not (tmp_path / "golden").exists()


def test_debug_shows_the_plugins_own_traceback(gated, tmp_path, run_cli):
    path, _ = gated["files"]["k3-keras"]
    plugin = _broken(tmp_path, "return 1 / 0")
    result = run_cli("--debug", "predict", path, gated["x"], "-o", tmp_path / "y.npy", "--plugin", plugin)
    assert result.exit_code == 3
    assert f'File "{plugin}", line 8, in broken' in result.stderr and "ZeroDivisionError" in result.stderr


def test_plugins_are_in_force_for_a_command_or_a_thread_only(gated, run_cli, tmp_path):
    path, _ = gated["files"]["k3-h5"]
    plugin = gated["plugins"]["k3"]
    assert run_cli("predict", path, gated["x"], "-o", tmp_path / "y.npy", "--plugin", plugin).exit_code == 0
    with pytest.raises(UnsupportedError):  # the command's plugins ended with it
        forward(open_model(str(path)), [np.load(gated["x"])])
    seen = []

    def elsewhere() -> None:
        activate(load_plugins([str(plugin)]))
        seen.append(files_in_force())

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join()
    assert len(seen[0].plugins) == 1 and files_in_force().plugins == ()


def test_a_plugins_helper_modules_are_its_own(tmp_path):
    """Two plugins in two folders each import their own `plugin_helpers`: neither gets the other's; a
    keras_objects() function may import a helper beside it when it is called."""
    for folder, factor in (("a", 2.0), ("b", 3.0)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "plugin_helpers.py").write_text(f"FACTOR = {factor}\n")
        write_plugin(
            tmp_path / folder,
            """
            import plugin_helpers
            from lstm_parity.plugins import layer

            @layer("Lambda", name="scale")
            def scale(inputs, weights, config):
                return inputs[0] * plugin_helpers.FACTOR

            def keras_objects():
                import plugin_helpers as again

                return {"Factor": again.FACTOR}
            """,
        )
    a, b = (load_plugin_file(str(tmp_path / folder / "my_layers.py")) for folder in ("a", "b"))
    assert [each.layers[0].function([np.ones(1)], [], {})[0] for each in (a, b)] == [2.0, 3.0]
    assert "plugin_helpers" not in sys.modules
    assert a.keras_dict() == {"Factor": 2.0} and b.keras_dict() == {"Factor": 3.0}


def test_registrations_a_module_replaces_or_imports(tmp_path):
    """A second `def` of the same name does not silently replace the first registration; registrations made in
    a loop all count; a plugin that imports another plugin's function is not a second registration of it."""
    redefined = write_plugin(
        tmp_path,
        """
        from lstm_parity.plugins import layer

        @layer("Scale")
        def scale(inputs, weights, config):
            return inputs[0] * weights[0]

        @layer("Scale")
        def scale(inputs, weights, config):
            return inputs[0]
        """,
        "redefined.py",
    )
    with pytest.raises(
        Exception, match=r"two functions register Scale: scale \(redefined.py:4\) and scale \(redefined.py:8\)"
    ):
        load_plugin_file(str(redefined))
    looped = write_plugin(
        tmp_path,
        """
        from lstm_parity.plugins import layer

        for factor in (2, 3):
            @layer("Lambda", name=f"times{factor}")
            def times(inputs, weights, config, factor=factor):
                return inputs[0] * factor
        """,
        "looped.py",
    )
    assert sorted(each.name for each in load_plugin_file(str(looped)).layers) == ["times2", "times3"]
    write_plugin(tmp_path, "from looped import times\n", "importer.py")
    plugins = load_plugins([str(looped), str(tmp_path / "importer.py")])
    assert [len(plugin.layers) for plugin in plugins.plugins] == [2, 1]


# ------------------------------------------------------------------------------ the examples


def example(name: str) -> Path:
    return EXAMPLES / f"{name}.py"


def attention_model(class_name: str, plugin: Path, time: int, seed: int = 3):
    """LSTM(return_sequences) -> the example's class -> Dense, built with the example's own Keras class and
    saved as a Keras 3 .h5 as the corpus files were; time > 1 so that the softmax over time matters."""
    keras = keras_module("k3-h5")
    cls = load_plugin_file(str(plugin)).keras_dict()[class_name]
    keras.utils.set_random_seed(seed)
    inp = keras.Input((time, FEATURES))
    x = cls(name="attention")(keras.layers.LSTM(UNITS, return_sequences=True)(inp))
    return randomize(keras.Model(inp, keras.layers.Dense(1)(x)), seed)


@pytest.mark.parametrize(
    ("class_name", "name"), [("SimpleAttention", "simple_attention"), ("AttentionLayer", "attention_layer")]
)
def test_examples_check_on_models_rebuilt_with_their_classes(class_name, name, tmp_path, run_cli):
    model = attention_model(class_name, example(name), time=7)
    path = tmp_path / "attention.h5"
    model.save(path)
    x = np.random.default_rng(4).standard_normal((5, 7, FEATURES)).astype(np.float32)
    x_path = write_npy(tmp_path, "x.npy", x)
    result = run_cli("predict", path, x_path, "-o", tmp_path / "y.npy", "--plugin", example(name))
    assert result.exit_code == 0, result.output
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - model.predict(x, verbose=0))) < 1e-6
    assert run_cli("check", path, x_path, "--plugin", example(name), "-q").exit_code == 0


CORPUS_FILES = [("02", "SimpleAttention", "simple_attention"), ("15", "AttentionLayer", "attention_layer")]


def upstream_class(class_name: str):
    """The class as its repository wrote it, in the TensorFlow ops it used (tf.tensordot / tf.nn, and
    tf.keras.backend's dot / softmax / sum), reconstructed here from the source each example's docstring names
    (AdityaKumar1009/Dissolved-Oxygen-Prediction-for-Water-Quality-Monitoring@8643231, Dissolved_Oxygen_2.ipynb;
    somi-oss/SQL-injection-Detection-Project@834eb01, attention_layer.py) and the weights the corpus file holds.
    The example's NumPy and its keras.ops rewrite are checked against it, so an error both share shows."""
    import keras
    import tensorflow as tf

    backend = tf.keras.backend  # what attention_layer.py imports as K

    class SimpleAttention(keras.layers.Layer):
        def build(self, input_shape):
            self.W = self.add_weight(name="att_weight", shape=(input_shape[-1], 1), initializer="normal")
            self.b = self.add_weight(name="att_bias", shape=(input_shape[1], 1), initializer="zeros")

        def call(self, x):
            e = tf.nn.tanh(tf.tensordot(x, self.W, axes=1) + self.b)  # (batch, time, 1)
            return tf.reduce_sum(x * tf.nn.softmax(e, axis=1), axis=1)  # (batch, features)

    class AttentionLayer(keras.layers.Layer):
        def build(self, input_shape):
            self.W = self.add_weight(name="att_weight", shape=(input_shape[-1], 1), initializer="glorot_uniform")
            self.b = self.add_weight(name="att_bias", shape=(1,), initializer="zeros")

        def call(self, x):
            e = backend.tanh(backend.dot(x, self.W) + self.b)  # (batch, time, 1)
            return backend.sum(x * backend.softmax(e, axis=1), axis=1)  # (batch, features)

    return {"SimpleAttention": SimpleAttention, "AttentionLayer": AttentionLayer}[class_name]


@pytest.mark.skipif(not CORPUS2.is_dir(), reason="../shared/corpus2 is absent")
@pytest.mark.parametrize(("number", "class_name", "name"), CORPUS_FILES)
def test_examples_compute_the_corpus_files_they_were_written_for(number, class_name, name, tmp_path, run_cli):
    (path,) = CORPUS2.glob(f"{number}_*")
    one_line_error(run_cli("predict", path, "-o", tmp_path / "y.npy"), 3, f"({class_name})", "--plugin FILE.py")
    args = ("predict", path, "-o", tmp_path / "y.npy", "--samples", "16", "--save-inputs", tmp_path / "x.npy")
    result = run_cli(*args, "--plugin", example(name))
    assert result.exit_code == 0, result.output
    ours = np.load(tmp_path / "y.npy")
    assert np.all(np.isfinite(ours))
    result = run_cli("check", path, "--samples", "16", "--plugin", example(name), "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["keras"]["version"].startswith("3.") and data["weights"]["identical"]
    assert data["plugins"][0]["layers"][0]["class_name"] == class_name
    assert data["comparisons"][0]["outputs"][0]["max_abs_diff"] < 1e-5
    keras = keras_module("k3-h5")
    upstream = keras.models.load_model(path, compile=False, custom_objects={class_name: upstream_class(class_name)})
    theirs = np.asarray(upstream.predict(np.load(tmp_path / "x.npy"), verbose=0))
    assert theirs.shape == ours.shape and np.max(np.abs(ours - theirs)) < 1e-5
