"""A real S3 API for tests: moto's standalone server on 127.0.0.1 (never AWS)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.processes import free_port

# moto accepts any credentials; these keep boto3 from looking for real ones.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 server."""

    endpoint_url: str

    def client(self) -> Any:
        """A boto3 client of the server."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        ).client("s3", endpoint_url=self.endpoint_url)

    def new_bucket(self) -> str:
        """A fresh, empty bucket."""
        name = f"llmga-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self, bucket: str, prefix: str = "images/") -> dict[str, str]:
        """The LLMGA_* (and AWS_*) variables that put a service's images in `bucket`."""
        return {
            **FAKE_CREDENTIALS,
            "LLMGA_BLOB_STORE": "s3",
            "LLMGA_S3_BUCKET": bucket,
            "LLMGA_S3_ENDPOINT_URL": self.endpoint_url,
            "LLMGA_S3_REGION": REGION,
            "LLMGA_S3_PREFIX": prefix,
        }


@contextmanager
def start_s3_server() -> Iterator[S3Server]:
    """moto's ThreadedMotoServer on a free port of 127.0.0.1, stopped afterwards."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
