"""Serving on Triton Inference Server: exports, model repository, client.

``onnx_export`` turns the two-tower towers into ONNX graphs (checked against PyTorch with ONNX
Runtime), ``lightgbm_export`` the boosters into LightGBM text for the FIL backend (served as raw
margins), ``repository`` writes both into a GPU repository (ONNX Runtime, FIL) and a CPU one
(Python backend running the same files), ``config`` builds and checks ``config.pbtxt`` as
``ModelConfig`` protobufs, and ``client`` queries a server by URL.
"""
