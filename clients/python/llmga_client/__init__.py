"""Python client of the LLMGA gateway.

from llmga_client import Client

with Client("http://127.0.0.1:8000", api_key="llmga_…") as client:
    turn = client.chat(message="a husky astronaut")
    job = client.jobs.wait(turn.jobs[0].id)
    png = client.images.download(job.images[0])
"""

from . import webhooks
from ._version import __version__
from .client import (
    AsyncClient,
    AsyncConversations,
    AsyncImages,
    AsyncJobs,
    AsyncUploads,
    Client,
    Conversations,
    Images,
    Jobs,
    Uploads,
)
from .errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    JobWaitTimeout,
    LLMGAError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    StreamError,
    UnprocessableEntityError,
    WebhookVerificationError,
)
from .models import (
    ChatDelta,
    ChatResponse,
    ControlInput,
    ImageInput,
    ImagesResponse,
    ImageView,
    JobEvent,
    JobList,
    JobView,
    OutpaintInput,
    PreviewEvent,
    UploadResponse,
    WebhookEvent,
    WebhookInput,
)

__all__ = [
    "__version__",
    "APIConnectionError",
    "APIStatusError",
    "AsyncClient",
    "AsyncConversations",
    "AsyncImages",
    "AsyncJobs",
    "AsyncUploads",
    "AuthenticationError",
    "BadRequestError",
    "ChatDelta",
    "ChatResponse",
    "Client",
    "ConflictError",
    "ControlInput",
    "Conversations",
    "ImageInput",
    "ImageView",
    "Images",
    "ImagesResponse",
    "JobEvent",
    "JobList",
    "JobView",
    "JobWaitTimeout",
    "Jobs",
    "LLMGAError",
    "NotFoundError",
    "OutpaintInput",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PreviewEvent",
    "RateLimitError",
    "ServerError",
    "StreamError",
    "UnprocessableEntityError",
    "UploadResponse",
    "Uploads",
    "WebhookEvent",
    "WebhookInput",
    "WebhookVerificationError",
    "webhooks",
]
