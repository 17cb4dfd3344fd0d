"""`lstm-parity export`: rebuild a model from our own spec with Keras 3, convert it for a runtime
(ONNX Runtime, LiteRT or TFLite Micro) along a path that works, and write the file only once the check
flow proved it in that runtime.

options.py   what is asked (format from OUT's extension, target runtime, quantization, strategy, fixed shapes)
strategy.py  which conversion path, why, and the combinations refused by name (exit 3), TFLite Micro's too
rebuild.py   the Keras 3 model, built by upgrade's machinery (hard_sigmoid rescaled exactly)
toolchain.py the converters, imported only here and only when an export runs, and kept quiet
onnx_convert.py / tflite_convert.py   the conversions and quantizers
run.py       convert into a temporary file, prove, publish
report.py    the report, as text and JSON
"""
