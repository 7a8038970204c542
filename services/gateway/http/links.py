"""The URLs answers carry (images, a job's events): paths, or absolute under
`LLMGA_PUBLIC_BASE_URL`, and signed for the tenant when `LLMGA_URL_SIGNING_SECRET` is set
(signed_urls.py). With the S3 blob store (LLMGA_BLOB_STORE=s3), an image in its stored
format is a presigned URL of the object store instead: clients download straight from it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from services.gateway.http.signed_urls import UrlSigner, expiry

if TYPE_CHECKING:
    from services.gateway.settings import GatewaySettings


@dataclass(frozen=True)
class Links:
    """How one tenant's URLs are written. `Links()`: plain paths, unsigned."""

    base_url: str = ""
    signer: UrlSigner | None = None
    tenant: str = ""
    image_ttl_s: int = 3600
    events_ttl_s: int = 300
    # When the URLs are made (None: at each call). An event stream fixes it at its start,
    # so that its events do not differ by their URLs alone.
    at: float | None = None
    # (tenant, image id) -> a presigned URL of the object store, or None (no such URL).
    presign: Callable[[str, str], str | None] | None = None
    # The presigned URLs made by this instance: one stays the same across the events of
    # a stream (a presigned URL embeds the time it was signed at).
    _presigned: dict[str, str] = field(default_factory=dict, init=False, compare=False)

    def _now(self) -> float:
        return time.time() if self.at is None else self.at

    @classmethod
    def for_tenant(
        cls,
        settings: GatewaySettings,
        signer: UrlSigner | None,
        tenant: str,
        presign: Callable[[str, str], str | None] | None = None,
    ) -> Links:
        """The tenant's links as the settings have them (`presign`: the blob store's
        presigned URLs, `AsyncBlobStore.presigned_url`)."""
        return cls(
            base_url=settings.public_base_url.rstrip("/"),
            signer=signer,
            tenant=tenant,
            image_ttl_s=settings.signed_url_ttl_s,
            events_ttl_s=settings.events_token_ttl_s,
            presign=presign,
        )

    def image(
        self, image_id: str, image_format: str | None = None, quality: int | None = None
    ) -> str:
        """Where to download an image: `{base}/v1/images/{id}`, signed if configured;
        `image_format` (and `quality`) add `format=` (`quality=`): the download converts
        the stored PNG (the signature covers the image, whatever its format). With
        `presign` and no conversion: the object store's presigned URL."""
        if self.presign is not None and image_format is None and quality is None:
            presigned = self._presigned.get(image_id) or self.presign(self.tenant, image_id)
            if presigned is not None:
                self._presigned[image_id] = presigned
                return presigned
        url = f"{self.base_url}/v1/images/{quote(image_id, safe='')}"
        query = []
        if self.signer is not None:
            expires = expiry(self._now(), self.image_ttl_s)
            query.append(self.signer.image_query(self.tenant, image_id, expires))
        if image_format is not None:
            query.append(f"format={quote(image_format, safe='')}")
        if quality is not None:
            query.append(f"quality={quality}")
        return f"{url}?{'&'.join(query)}" if query else url

    def events(self, job_id: str) -> str:
        """A job's event stream: `{base}/v1/jobs/{id}/events`, with a `token` if configured."""
        url = f"{self.base_url}/v1/jobs/{quote(job_id, safe='')}/events"
        if self.signer is None:
            return url
        token = self.signer.events_token(
            self.tenant, job_id, expiry(self._now(), self.events_ttl_s)
        )
        return f"{url}?token={token}"


PLAIN = Links()


def url_signer(settings: GatewaySettings) -> UrlSigner | None:
    """The deployment's signer; None when LLMGA_URL_SIGNING_SECRET is unset."""
    secret = settings.url_signing_secret.get_secret_value()
    return UrlSigner(secret) if secret else None
