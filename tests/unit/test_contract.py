"""The job contract: generated code is current, and jobs survive the trip through the broker."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.contract import (
    GenerationRequest,
    JobStatus,
    Task,
    decode_request,
    encode_request,
    status_name,
    task_from_name,
    task_name,
)

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    """Fails when proto/ changed without `make proto`."""
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            *protos,
        ],
        cwd=ROOT,
        check=True,
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "protoc produced nothing"
    committed = ROOT / "services/common/proto"
    for rel in generated:
        assert filecmp.cmp(tmp_path / rel, committed / rel, shallow=False), (
            f"services/common/proto/{rel} is stale: run `make proto`"
        )


def test_request_round_trips_through_broker_encoding() -> None:
    request = GenerationRequest(
        job_id="job_1",
        tenant="local",
        task=Task.TASK_T2I,
        prompt="a husky astronaut " * 40,
        negative_prompt="blurry",
        width=64,
        height=96,
        steps=3,
        guidance_scale=0.0,
        seed=7,
        n=2,
    )
    decoded = decode_request(encode_request(request))
    assert decoded == request
    assert decoded.HasField("guidance_scale") and decoded.guidance_scale == 0.0
    assert not GenerationRequest().HasField("seed"), "an unset seed must stay distinguishable"


def test_task_and_status_names() -> None:
    assert task_name(Task.TASK_T2I) == "t2i"
    assert task_from_name("outpaint") == Task.TASK_OUTPAINT
    assert status_name(JobStatus.JOB_STATUS_SUCCEEDED) == "succeeded"
    with pytest.raises(ValueError, match="unknown task"):
        task_from_name("paint-it-black")
