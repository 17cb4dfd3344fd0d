"""How to build a model so a given runtime computes it correctly (tflm.py: TFLite Micro), for `export` and
the tests to share. Nothing here imports TensorFlow or Keras at module import."""
