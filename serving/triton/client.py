"""Query a Triton server by URL: readiness, batched inference, and the served models' semantics.

Thin over ``tritonclient.http``: numpy in, numpy out. A request larger than the model's
``max_batch_size`` is split into chunks sent concurrently, which also lets the server's dynamic
batcher merge them. What the outputs mean is documented with the exports: towers return unit
embeddings; LightGBM models return the raw margin, and :func:`calibrated` turns a classifier's
margin into its calibrated probability with the served model's own calibrator, the same
computation as ``CalibratedClassifier.predict_proba``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from runtime.models.classifier import CalibratedClassifier
from serving.triton.lightgbm_export import INPUT, OUTPUT, TreeModel, feature_array


class TritonError(RuntimeError):
    """The server refused a request or did not become ready; the message says which model."""


class TritonClient:
    """A client for one server, e.g. ``TritonClient("127.0.0.1:8000")`` (HTTP endpoint)."""

    def __init__(self, url: str, concurrency: int = 4, timeout_s: float = 60.0) -> None:
        self.url = url.removeprefix("http://")
        self._client = httpclient.InferenceServerClient(
            self.url,
            concurrency=concurrency,
            connection_timeout=timeout_s,
            network_timeout=timeout_s,
        )
        self._max_batch: dict[str, int] = {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_ready(self, model: str | None = None) -> bool:
        """The server (or one model) is ready; False while it cannot be reached."""
        try:
            if model is None:
                return bool(self._client.is_server_ready())
            return bool(self._client.is_model_ready(model))
        except (InferenceServerException, ConnectionError, OSError):
            return False

    def wait_until_ready(self, timeout_s: float = 60.0, poll_s: float = 0.2) -> None:
        """Block until ``/v2/health/ready``; :class:`TritonError` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise TritonError(f"Triton at {self.url} not ready after {timeout_s:g}s")
            time.sleep(poll_s)

    def models(self) -> list[str]:
        """Names of the models the server has loaded and ready."""
        index = self._client.get_model_repository_index()
        return sorted(m["name"] for m in index if m.get("state") == "READY")

    def max_batch_size(self, model: str) -> int:
        """The model's ``max_batch_size`` from the server's config (cached): the chunk size."""
        if model not in self._max_batch:
            try:
                config = self._client.get_model_config(model)
            except InferenceServerException as error:
                raise TritonError(
                    f"{model}: no config from {self.url}: {error.message()}"
                ) from None
            self._max_batch[model] = int(config.get("max_batch_size", 0))
        return self._max_batch[model]

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ``model`` on numpy ``inputs`` (batch first); outputs by name, rows in order.

        Rows are sent in chunks of ``batch_size`` (default: the model's ``max_batch_size``),
        concurrently; each chunk's answers are put back in place.
        """
        if not inputs:
            raise TritonError(f"{model}: no inputs given")
        rows = {len(v) for v in inputs.values()}
        if len(rows) != 1:
            raise TritonError(f"{model}: inputs have different row counts {sorted(rows)}")
        (n,) = rows
        if n == 0:
            raise TritonError(f"{model}: no rows to infer")
        size = batch_size or self.max_batch_size(model) or n
        pending = [
            self._send(model, {k: v[start : start + size] for k, v in inputs.items()}, outputs)
            for start in range(0, n, size)
        ]
        parts = []
        for request in pending:
            try:
                result = request.get_result()
            except InferenceServerException as error:
                raise TritonError(f"{model}: inference failed: {error.message()}") from None
            names = outputs or [o["name"] for o in result.get_response()["outputs"]]
            parts.append({name: result.as_numpy(name) for name in names})
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _send(
        self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None
    ) -> httpclient.InferAsyncRequest:
        tensors = []
        for name, array in inputs.items():
            array = np.ascontiguousarray(array)
            tensor = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)
        requested = [httpclient.InferRequestedOutput(n, binary_data=True) for n in outputs or []]
        try:
            return self._client.async_infer(model, tensors, outputs=requested or None)
        except InferenceServerException as error:
            raise TritonError(f"{model}: request refused: {error.message()}") from None

    def margins(
        self, model: str, served: TreeModel, frame: pd.DataFrame, batch_size: int | None = None
    ) -> np.ndarray:
        """A LightGBM model's raw margins for ``frame`` (encoded as the served model does)."""
        out = self.infer(model, {INPUT: feature_array(served, frame)}, [OUTPUT], batch_size)
        return out[OUTPUT].reshape(-1).astype(np.float64)


def calibrated(model: CalibratedClassifier, margin: np.ndarray) -> np.ndarray:
    """Calibrated P(label) from served margins: the model's own calibrator, as in serving."""
    return model.calibrator.transform(np.asarray(margin, dtype=np.float64).reshape(-1))
