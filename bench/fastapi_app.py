"""A bare FastAPI app around the same handler BentoML serves: the baseline of ``bench/serving_latency.py``.

One async route per endpoint (``/score``, ``/recommend`` or ``/search``, from the bundle's
manifest) that calls ``handler.handle`` on the JSON body, answering 422 with the error's body on a
``RequestError``, plus ``/readyz``. Loads the bundle named by ``PLAYBOOK_BUNDLE`` and logs requests
to ``PLAYBOOK_REQUEST_LOG`` exactly as the BentoML services do.

    PLAYBOOK_BUNDLE=<home>/serving/fraud/bundle python bench/fastapi_app.py --port 8000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from serving.requests import RequestError  # noqa: E402
from serving.service import build_handler, bundle_path  # noqa: E402


def make_app() -> FastAPI:
    handler = build_handler(bundle_path())
    endpoint = handler.bundle.manifest.endpoint
    app = FastAPI()

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(f"/{endpoint}")
    async def answer(payload: dict[str, Any] = Body(...)) -> Any:  # noqa: B008
        try:
            return handler.handle(payload)
        except RequestError as error:
            return JSONResponse(status_code=422, content=error.body())

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(make_app(), host=args.host, port=args.port, workers=1, log_level="warning")


if __name__ == "__main__":
    main()
