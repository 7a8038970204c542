"""Fixtures shared by the integration tests: real services as subprocesses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.services import HttpService, start_local_mllm


@pytest.fixture(scope="session")
def local_mllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpService]:
    """The real local mllm engine, started once per test session (loading it takes ~10 s;
    the first run on a machine also converts the GGUF, ~90 s)."""
    with start_local_mllm(tmp_path_factory.mktemp("mllm-logs")) as service:
        yield service
