"""A Triton Python-backend model that runs the GPU repository's artifact on the CPU.

Copied as ``<model>/1/model.py`` beside the same ``model.onnx`` (run with ONNX Runtime) or
``model.txt`` (LightGBM text, run with ``lightgbm``) that the GPU variant serves with the ONNX
Runtime and FIL backends; the config's ``artifact`` parameter names the file. Inputs and outputs
are those of the config, so a client cannot tell the variants apart.

Dynamic batching hands ``execute`` several requests at once: their inputs are concatenated along
the batch axis, run in one call and split back, which is the point of batching. A failure is
returned as an error on every request of the batch, never raised (that would kill the stub).

Runs inside Triton's stub with the server's own environment (numpy<2): standard library, numpy,
and the one runtime the artifact needs; nothing from Playbook.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class _OnnxRunner:
    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, inputs: dict, outputs: list) -> list:
        return self.session.run(outputs, inputs)


class _LightGBMRunner:
    def __init__(self, path: Path) -> None:
        import lightgbm

        self.booster = lightgbm.Booster(model_file=str(path))

    def __call__(self, inputs: dict, outputs: list) -> list:
        (x,) = inputs.values()
        # the exported text has an identity objective: predict() is the raw tree margin
        return [self.booster.predict(x).reshape(-1, 1)]


_RUNNERS = {".onnx": _OnnxRunner, ".txt": _LightGBMRunner}


class TritonPythonModel:
    """Loads the artifact once per instance; serves batched requests."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        folder = Path(args["model_repository"]) / args["model_version"]
        artifact = config["parameters"]["artifact"]["string_value"]
        path = folder / artifact
        if path.suffix not in _RUNNERS:
            raise ValueError(f"{path}: no runner for {path.suffix!r} (use .onnx or .txt)")
        self.runner = _RUNNERS[path.suffix](path)
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [
            (o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]
        ]

    def execute(self, requests: list) -> list:
        sizes = []
        batches = {name: [] for name in self.inputs}
        for request in requests:
            for name in self.inputs:
                batches[name].append(pb_utils.get_input_tensor_by_name(request, name).as_numpy())
            sizes.append(len(batches[self.inputs[0]][-1]))
        try:
            inputs = {name: np.concatenate(parts) for name, parts in batches.items()}
            results = self.runner(inputs, [name for name, _ in self.outputs])
        except Exception as error:  # report to every caller; raising would kill the stub
            message = f"{type(error).__name__}: {error}"
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(message)) for _ in sizes]
        bounds = np.cumsum([0, *sizes])
        responses = []
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(result[start:end], dtype=dtype))
                for (name, dtype), result in zip(self.outputs, results, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
