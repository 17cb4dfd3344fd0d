"""The other sides of a check, each behind the Runner interface (base.py) and each the only importer
of its runtime: Keras (keras_runner), ONNX Runtime (onnx_runtime), LiteRT (litert), and a file of
outputs produced elsewhere (expected)."""
