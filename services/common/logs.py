"""Logging for every service: one JSON object per line (or readable text), carrying the
request id and job id of the work being done, with secrets and image data redacted.

`configure_logging(service, fmt)` is called once at process start (`LLMGA_LOG_FORMAT`:
`text`, the default, or `json`). `log_context(request_id=..., job_id=...)` sets the ids
that every record logged inside it carries; they live in context variables, so they
follow a request through asyncio tasks and the threads Starlette runs sync handlers in.
No torch here: the gateway imports this module.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

LogFormat = Literal["text", "json"]

_request_id: ContextVar[str] = ContextVar("llmga_request_id", default="")
_job_id: ContextVar[str] = ContextVar("llmga_job_id", default="")

# A client's X-Request-ID is used only when it is short and plain (it ends up in logs,
# headers and job records); anything else is replaced by a fresh id.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# What must never reach a log line, whatever a message or an exception text holds.
_REDACTIONS = (
    # Bearer tokens (API keys, the mllm's key) as in an Authorization header.
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1<redacted>"),
    # The gateway's API keys anywhere (llmga_ + 43 URL-safe base64 characters).
    (re.compile(r"\bllmga_[A-Za-z0-9_-]{16,}"), "llmga_<redacted>"),
    # Inline images: data URIs, then any long base64 run.
    (re.compile(r"data:([\w.+/-]*);base64,[A-Za-z0-9+/=\s\\n]*"), r"data:\1;base64,<redacted>"),
    (re.compile(r"[A-Za-z0-9+/]{200,}={0,2}"), "<redacted base64>"),
)


def redact(text: str) -> str:
    """`text` with bearer tokens, API keys and base64 image data replaced."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def is_valid_request_id(value: str) -> bool:
    """1-128 characters of letters, digits and `._:-`."""
    return _REQUEST_ID.fullmatch(value) is not None


def current_request_id() -> str:
    """The request id of the current context ("" outside a request or job)."""
    return _request_id.get()


def current_job_id() -> str:
    """The job id of the current context ("" outside a job)."""
    return _job_id.get()


@contextmanager
def log_context(request_id: str | None = None, job_id: str | None = None) -> Iterator[None]:
    """Records logged inside the block carry these ids (None: keep the outer value)."""
    tokens = []
    if request_id is not None:
        tokens.append((_request_id, _request_id.set(request_id)))
    if job_id is not None:
        tokens.append((_job_id, _job_id.set(job_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, service, and request_id /
    job_id when known (plus `exc` with the traceback of an exception)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "service": self.service,
        }
        if request_id := current_request_id():
            entry["request_id"] = request_id
        if job_id := current_job_id():
            entry["job_id"] = job_id
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact(record.exc_text)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger> [request_id job_id]: <message>`, redacted like the JSON."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = [value for value in (current_request_id(), current_job_id()) if value]
        record.context = f" [{' '.join(ids)}]" if ids else ""
        return redact(super().format(record))


def _iso_time(created: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created % 1 * 1000):03d}Z"
    )


def make_formatter(service: str, fmt: LogFormat) -> logging.Formatter:
    """The formatter for `fmt`."""
    return JsonFormatter(service) if fmt == "json" else TextFormatter()


def configure_logging(service: str, fmt: LogFormat = "text", level: str = "info") -> None:
    """Send every log record of the process, to stderr, through one handler with the
    chosen format. Libraries that installed their own handlers (uvicorn, transformers)
    are made to propagate to it instead, and `warnings` become log records."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(service, fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    # uvicorn configures its loggers later, unless told not to (gateway: log_config=None).
    names = {"uvicorn", "uvicorn.error", "uvicorn.access", *logging.root.manager.loggerDict}
    for name in names:
        library_logger = logging.getLogger(name)
        if library_logger.handlers:
            library_logger.handlers.clear()
            library_logger.propagate = True
