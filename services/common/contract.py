"""The generation-job contract: protobuf messages and their (de)serialisation.

Jobs cross the broker as base64 text because Celery's JSON serializer carries no bytes.
"""

from __future__ import annotations

import base64

from services.common.proto.llmga.v1.jobs_pb2 import (
    Control,
    ControlType,
    Edit,
    EditMethod,
    GeneratedImage,
    GenerationRequest,
    JobRecord,
    JobStatus,
    Outpaint,
    Progress,
    Task,
    Timings,
    Webhook,
)

__all__ = [
    "GENERATE_TASK_NAME",
    "Control",
    "ControlType",
    "Edit",
    "EditMethod",
    "GeneratedImage",
    "GenerationRequest",
    "JobRecord",
    "JobStatus",
    "Outpaint",
    "Progress",
    "Task",
    "Timings",
    "Webhook",
    "TERMINAL_STATUSES",
    "task_name",
    "task_from_name",
    "status_name",
    "encode_request",
    "decode_request",
]

# The Celery task the gateway sends and the worker registers; its one argument is
# `encode_request(GenerationRequest)`.
GENERATE_TASK_NAME = "llmga.generate"

TERMINAL_STATUSES = frozenset(
    {JobStatus.JOB_STATUS_SUCCEEDED, JobStatus.JOB_STATUS_FAILED, JobStatus.JOB_STATUS_CANCELED}
)


def task_name(task: int) -> str:
    """`Task.TASK_T2I` -> "t2i": the name used in the REST API."""
    return Task.Name(task).removeprefix("TASK_").lower()  # type: ignore[arg-type]


def task_from_name(name: str) -> int:
    """ "t2i" -> `Task.TASK_T2I`; raises ValueError for an unknown name."""
    try:
        return Task.Value("TASK_" + name.upper())
    except ValueError:
        raise ValueError(f"unknown task {name!r}") from None


def status_name(status: int) -> str:
    """`JobStatus.JOB_STATUS_RUNNING` -> "running"."""
    return JobStatus.Name(status).removeprefix("JOB_STATUS_").lower()  # type: ignore[arg-type]


def encode_request(request: GenerationRequest) -> str:
    """Serialise a request for the broker."""
    return base64.b64encode(request.SerializeToString()).decode("ascii")


def decode_request(payload: str) -> GenerationRequest:
    """Inverse of `encode_request`."""
    request = GenerationRequest()
    request.ParseFromString(base64.b64decode(payload))
    return request
