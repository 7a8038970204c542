"""Where the images come from: the running backend through its public API (`HttpBackend`,
what `make eval` uses), or the toy pipelines in this process (`LocalBackend`: the claims'
ablations, which need models no worker serves)."""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
from PIL import Image


@dataclass(frozen=True)
class Result:
    """One generated image and what the job said about it."""

    image: Image.Image
    restore_used: str | None = None


class Backend(Protocol):
    """What the protocols ask of a backend."""

    def text_to_image(self, prompt: str, seed: int) -> Result: ...

    def inpaint(self, image: Image.Image, mask: Image.Image, prompt: str, seed: int) -> Result: ...

    def edit(
        self, image: Image.Image, source: str, target: str, method: str, seed: int
    ) -> Result: ...

    def restore(
        self, image: Image.Image, reference: Image.Image, mask: Image.Image, seed: int
    ) -> Result: ...


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@dataclass
class HttpBackend:
    """`POST /v1/images` (waited for), then the image's bytes; jobs that fail raise."""

    base_url: str
    api_key: str = ""
    timeout_s: float = 300.0
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=60)

    def _run(self, body: dict[str, object]) -> Result:
        response = self.client.post("/v1/images", json=body, headers={"Prefer": "wait=50"})
        response.raise_for_status()
        job = response.json()
        deadline = time.monotonic() + self.timeout_s
        while job["status"] not in ("succeeded", "failed", "canceled"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job['id']} not done after {self.timeout_s}s")
            job = self.client.get(f"/v1/jobs/{job['id']}", params={"wait": 50}).json()
        if job["status"] != "succeeded":
            raise RuntimeError(f"job {job['id']} {job['status']}: {job.get('error')}")
        image = self.client.get(job["images"][0]["url"])
        image.raise_for_status()
        return Result(Image.open(io.BytesIO(image.content)).convert("RGB"), job.get("restore_used"))

    def text_to_image(self, prompt: str, seed: int) -> Result:
        return self._run({"task": "t2i", "prompt": prompt, "seed": seed, "refine": False})

    def inpaint(self, image: Image.Image, mask: Image.Image, prompt: str, seed: int) -> Result:
        return self._run(
            {
                "task": "inpaint",
                "prompt": prompt,
                "seed": seed,
                "refine": False,
                "image": {"b64": _data_uri(image)},
                "mask": {"b64": _data_uri(mask)},
            }
        )

    def edit(self, image: Image.Image, source: str, target: str, method: str, seed: int) -> Result:
        return self._run(
            {
                "task": "edit",
                "image": {"b64": _data_uri(image)},
                "source_caption": source,
                "target_caption": target,
                "edit_method": method,
                "seed": seed,
            }
        )

    def restore(
        self, image: Image.Image, reference: Image.Image, mask: Image.Image, seed: int
    ) -> Result:
        return self._run(
            {
                "task": "restore",
                "image": {"b64": _data_uri(image)},
                "reference": {"b64": _data_uri(reference)},
                "mask": {"b64": _data_uri(mask)},
                "seed": seed,
            }
        )


@dataclass
class LocalBackend:
    """The toy text-to-image pipeline in this process, prompts encoded as the worker
    encodes them (chunked), or truncated to 77 tokens for the ablation."""

    pipeline_dir: Path
    steps: int = 25
    guidance_scale: float = 4.0
    truncate: bool = False

    def __post_init__(self) -> None:
        from diffusers import StableDiffusionPipeline

        self.pipeline = StableDiffusionPipeline.from_pretrained(
            self.pipeline_dir, safety_checker=None
        )
        self.pipeline.set_progress_bar_config(disable=True)

    def text_to_image(self, prompt: str, seed: int) -> Result:
        import torch

        from services.worker.prompt_encoding import encode_long_prompt

        if self.truncate:
            ids = self.pipeline.tokenizer(prompt, add_special_tokens=False)["input_ids"][:75]
            prompt = self.pipeline.tokenizer.decode(ids)
        encoded = encode_long_prompt(
            self.pipeline.tokenizer,
            self.pipeline.text_encoder,
            prompt,
            "",
            torch.device("cpu"),
            do_classifier_free_guidance=True,
        )
        image = self.pipeline(
            **encoded.pipeline_kwargs(),
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            generator=torch.Generator().manual_seed(seed),
        ).images[0]
        return Result(image)

    def inpaint(self, image: Image.Image, mask: Image.Image, prompt: str, seed: int) -> Result:
        raise NotImplementedError("the local backend serves text-to-image only")

    def edit(self, image: Image.Image, source: str, target: str, method: str, seed: int) -> Result:
        raise NotImplementedError("the local backend serves text-to-image only")

    def restore(
        self, image: Image.Image, reference: Image.Image, mask: Image.Image, seed: int
    ) -> Result:
        raise NotImplementedError("the local backend serves text-to-image only")
