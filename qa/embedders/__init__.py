"""Embedder implementations, chosen by the ``embedder`` setting: ``onnx.py`` (the default int8
graph), ``sentence_transformers.py`` (the float reference), ``ray_embed.py`` (a build's batches on
Ray), ``fake.py`` (tests and demos). Each passes tests/contracts/test_embedders.py."""
