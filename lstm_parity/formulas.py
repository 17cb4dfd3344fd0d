"""The math a porter has to write, as text: each activation's formula under the Keras generation that
saved the file, a numeric code per (activation, generation) for generated C headers, each layer
class's equations, what a mask does to a recurrent layer, and how Bidirectional merges its two outputs.
The formulas are those of `reference.activations` (which the tests check against Keras); the same name
can mean two functions (hard_sigmoid) and then has two codes.
"""

from __future__ import annotations

from typing import Any

from .reference.activations import ACTIVATIONS, activation_name

# (code macro suffix, formula) per activation name, for either generation unless overridden below.
_FORMULAS: dict[str, tuple[str, str]] = {
    "linear": ("LINEAR", "x"),
    "relu": ("RELU", "max(x, 0)"),
    "tanh": ("TANH", "tanh(x)"),
    "sigmoid": ("SIGMOID", "1 / (1 + exp(-x))"),
    "softmax": ("SOFTMAX", "exp(x_j - max(x)) / sum_k exp(x_k - max(x)), over the last axis"),
    "elu": ("ELU", "x if x > 0 else exp(x) - 1"),
    "selu": ("SELU", "1.0507009873554805 * (x if x > 0 else 1.6732632423543772 * (exp(x) - 1))"),
    "softplus": ("SOFTPLUS", "log(1 + exp(x))"),
    "softsign": ("SOFTSIGN", "x / (1 + |x|)"),
    "exponential": ("EXPONENTIAL", "exp(x)"),
    "swish": ("SWISH", "x * sigmoid(x)"),
    "silu": ("SWISH", "x * sigmoid(x)"),
    "gelu": ("GELU", "0.5 * x * (1 + erf(x / sqrt(2)))"),
    "relu6": ("RELU6", "min(max(x, 0), 6)"),
    "mish": ("MISH", "x * tanh(log(1 + exp(x)))"),
    "hard_silu": ("HARD_SILU", "x * min(max(x + 3, 0), 6) / 6"),
    "hard_swish": ("HARD_SILU", "x * min(max(x + 3, 0), 6) / 6"),
    "leaky_relu": ("LEAKY_RELU_0_2", "x if x >= 0 else 0.2 * x"),
    "log_softmax": ("LOG_SOFTMAX", "x_j - max(x) - log(sum_k exp(x_k - max(x))), over the last axis"),
}
_BY_GENERATION: dict[tuple[str, str], tuple[str, str]] = {
    ("hard_sigmoid", "keras2"): ("HARD_SIGMOID_KERAS2", "clip(0.2 * x + 0.5, 0, 1)"),
    ("hard_sigmoid", "keras3"): ("HARD_SIGMOID_KERAS3", "relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)"),
}
# What a porter copying a formula from elsewhere gets wrong, per (name, generation).
CAVEATS: dict[tuple[str, str], str] = {
    ("hard_sigmoid", "keras2"): "Keras 1/2 and tf.keras; Keras 3's hard_sigmoid is relu6(x + 3) / 6",
    ("hard_sigmoid", "keras3"): "Keras 3; Keras 1/2's hard_sigmoid is clip(0.2 * x + 0.5, 0, 1)",
    ("leaky_relu", "keras3"): "Keras 3's default slope; Keras 2's LeakyReLU layer defaulted to 0.3",
}
# Every code a header may use, in a fixed order (the numbers are part of the header's interface).
ACTIVATION_CODES: tuple[str, ...] = (
    "LINEAR",
    "RELU",
    "TANH",
    "SIGMOID",
    "HARD_SIGMOID_KERAS2",
    "HARD_SIGMOID_KERAS3",
    "SOFTMAX",
    "ELU",
    "SELU",
    "SOFTPLUS",
    "SOFTSIGN",
    "EXPONENTIAL",
    "SWISH",
    "GELU",
    "RELU6",
    "MISH",
    "HARD_SILU",
    "LEAKY_RELU_0_2",
    "LOG_SOFTMAX",
)
UNKNOWN_CODE = "UNKNOWN"


def activation(value: Any, semantics: str) -> tuple[str, str, str]:
    """(name, code suffix, formula) of a config's activation under `semantics` ("keras2"/"keras3");
    a name that generation does not have gets UNKNOWN_CODE and a formula saying so. CAVEATS holds what
    differs in the other generation."""
    name = activation_name(value)
    if name not in ACTIVATIONS[semantics]:
        return name, UNKNOWN_CODE, f"not a {semantics} activation lstm-parity knows: see the model's own code"
    code, formula = _BY_GENERATION.get((name, semantics)) or _FORMULAS[name]
    return name, code, formula


def layer_equations(class_name: str, options: dict[str, Any]) -> list[str]:
    """The equations of one layer in the names of its weight arrays (textbook form, one sample)."""
    if class_name == "LSTM":
        return [
            "z = x_t @ kernel + h_tm1 @ recurrent_kernel + bias      (4*units,): gate columns i, f, c, o",
            "i = recurrent_activation(z_i), f = recurrent_activation(z_f), o = recurrent_activation(z_o)",
            "c_hat = activation(z_c)",
            "c_t = f * c_tm1 + i * c_hat;  h_t = o * activation(c_t);  h_0 = c_0 = 0",
        ]
    if class_name == "GRU":
        if options.get("reset_after"):
            return [
                "xz, xr, xh = x_t @ kernel + bias[0]                    (3*units,): gate columns z, r, h",
                "hz, hr, hh = h_tm1 @ recurrent_kernel + bias[1]",
                "z = recurrent_activation(xz + hz), r = recurrent_activation(xr + hr)",
                "h_hat = activation(xh + r * hh);  h_t = z * h_tm1 + (1 - z) * h_hat;  h_0 = 0",
            ]
        return [
            "xz, xr, xh = x_t @ kernel + bias                       (3*units,): gate columns z, r, h",
            "z = recurrent_activation(xz + h_tm1 @ recurrent_kernel[:, z]), r = ... [:, r]",
            "h_hat = activation(xh + (r * h_tm1) @ recurrent_kernel[:, h])",
            "h_t = z * h_tm1 + (1 - z) * h_hat;  h_0 = 0",
        ]
    if class_name == "SimpleRNN":
        return ["h_t = activation(x_t @ kernel + h_tm1 @ recurrent_kernel + bias);  h_0 = 0"]
    if class_name == "Dense":
        return ["y = activation(x @ kernel + bias)      (on the last axis)"]
    if class_name == "Embedding":
        return ["y = embeddings[token_id]"]
    return []


# Bidirectional's merge_mode: the code suffix for generated C headers (numbers part of the interface), and y.
MERGE_MODES: dict[str | None, tuple[str, str]] = {
    "concat": ("CONCAT", "y = [y_fwd, y_bwd] (concatenated on the last axis)"),
    "sum": ("SUM", "y = y_fwd + y_bwd"),
    "mul": ("MUL", "y = y_fwd * y_bwd"),
    "ave": ("AVE", "y = (y_fwd + y_bwd) / 2"),
    None: ("NONE", "two outputs, y_fwd and y_bwd, not merged"),
}


def merge_equations(merge_mode: Any, return_sequences: bool) -> list[str]:
    """How Bidirectional makes its output from the forward and backward layers' outputs."""
    _, merged = MERGE_MODES.get(merge_mode, ("", f"merge_mode {merge_mode!r}: see Keras"))
    lines = ["y_fwd: the forward layer on x_0 .. x_(T-1); y_bwd: the backward layer on x_(T-1) .. x_0", merged]
    if return_sequences:
        lines.append(
            "return_sequences: y_bwd is reversed back in time before merging, so y[t] merges y_fwd[t] "
            "(after x_0 .. x_t) with the backward output after x_(T-1) .. x_t"
        )
    else:
        lines.append("last output: y_fwd after x_(T-1) merged with y_bwd after x_0 (the backward layer's last step)")
    return lines


def mask_equations(class_name: str, options: dict[str, Any], source: str, bidirectional: bool = False) -> list[str]:
    """What a Keras mask does to a recurrent layer (`class_name` LSTM, GRU or SimpleRNN, its `options`;
    `bidirectional` when it is the pair of a Bidirectional): `source` says where the mask comes from."""
    states = "h_t = h_tm1, c_t = c_tm1" if class_name == "LSTM" else "h_t = h_tm1"
    lines = [f"mask: {source}", f"at a masked step t the step is skipped: the states are kept, {states}"]
    sequences = bool(options.get("return_sequences"))
    if bidirectional:
        zeros = ", and both output zeros there (Bidirectional's rule)" if sequences else ""
        lines.append("in both directions" + zeros)
    elif sequences and options.get("zero_output_for_mask"):
        lines.append("and the output at a masked step is zeros (zero_output_for_mask)")
    elif sequences:
        lines.append("and the output at a masked step repeats the previous output (zeros before any unmasked step)")
    if not sequences:
        lines.append("the output is h after the last unmasked step (zeros when every step is masked)")
    return lines


def mask_source(class_name: str, options: dict[str, Any], name: str) -> str:
    """Where a mask comes from, in words: the masking layer `name` of class `class_name` ("Masking" or
    "Embedding") with its `options`."""
    if class_name == "Embedding":
        return f"{name} (Embedding, mask_zero=True) masks every step whose token id is 0"
    value = options.get("mask_value", 0.0)
    return (
        f"{name} (Masking) masks every step whose features all equal mask_value={value!r} (and sets those inputs to 0)"
    )
