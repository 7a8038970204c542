"""A JSON response rendered straight from a pydantic model.

`JSONResponse(model.model_dump(mode="json"))` builds a dict and then encodes it with the
standard library; `model_dump_json` does both in pydantic's compiled core, which is
measurably cheaper on the submit path (benchmarks/bench_gateway.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel
from starlette.responses import Response


class ModelResponse(Response):
    """`model` as the JSON body."""

    media_type = "application/json"

    def __init__(
        self,
        model: BaseModel,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(model.model_dump_json(), status_code=status_code, headers=headers)
