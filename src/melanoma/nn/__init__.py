"""The torch side: everything that needs PyTorch (the ``[train]`` extra). Transforms and the data module
(``data``), the network factory and model folders (``models``), the training step (``module``), the three training
stages (``train``: prepare, fit, finish), fitting a model folder's decision parts on its own features (``fit``),
ONNX export and Hub upload (``export``), test-time adaptation (``adapt``) and the PyTorch inference engine
(``torch_engine``).

Nothing outside this package imports it at module level: the core (``melanoma.*``) predicts, explains, evaluates
and serves with ONNX Runtime alone, and reaches in here only inside the commands that train (tests/test_layering.py).
"""
