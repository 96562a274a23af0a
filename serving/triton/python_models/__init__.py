"""Model files for Triton's Python backend, copied into the CPU repository as ``1/model.py``.

They run inside Triton's backend stub with the *server's* virtualenv (numpy<2, onnxruntime,
lightgbm; see ``scripts/install_triton.sh``), never with the project's: they import nothing
from Playbook, and nothing in Playbook imports them.
"""
