"""A webhook receiver for tests: an HTTP server on 127.0.0.1 that records every POST it
gets (path, headers, raw body), as a product's endpoint would receive the gateway's
deliveries."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.body)
        return payload


@dataclass
class Receiver:
    """Records every POST. A path `/fail-<k>/...` answers 500 to its first k requests,
    then 200; any other path answers 200."""

    port: int
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, prefix: str = "hook") -> str:
        return f"http://127.0.0.1:{self.port}/{prefix}/{uuid.uuid4().hex}"

    def received(self, url: str) -> list[Delivery]:
        path = url.split(str(self.port), 1)[1]
        with self.lock:
            return [d for d in self.deliveries if d.path == path]

    def wait_for(self, url: str, count: int, timeout_s: float = 60) -> list[Delivery]:
        """The first `count` requests to `url`, waiting for them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.received(url)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise TimeoutError(f"{url}: {len(self.received(url))} of {count} deliveries")


@contextmanager
def start_receiver() -> Iterator[Receiver]:
    """A receiver on a free port, serving in a thread until the block ends."""
    server_box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec = server_box[0]
            with rec.lock:
                earlier = sum(1 for d in rec.deliveries if d.path == self.path)
                rec.deliveries.append(Delivery(self.path, dict(self.headers), body))
            first = self.path.split("/")[1]  # "fail-<k>": answer 500 to the first k
            failures = int(first.removeprefix("fail-")) if first.startswith("fail-") else 0
            self.send_response(500 if earlier < failures else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_box.append(Receiver(port=server.server_address[1]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_box[0]
    finally:
        server.shutdown()
        server.server_close()
