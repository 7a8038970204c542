"""Where the images come from: the running backend through its public API (`HttpBackend`,
what `make eval` uses), or the toy pipelines in this process (`LocalBackend`: the claims'
ablations, which need models no worker serves)."""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx
from PIL import Image

if TYPE_CHECKING:
    from services.common.contract import GenerationRequest, Task


@dataclass(frozen=True)
class Result:
    """One generated image and what the job said about it."""

    image: Image.Image
    restore_used: str | None = None


class Restoring(Protocol):
    """What the restoration protocol asks of a backend."""

    def restore(
        self, image: Image.Image, reference: Image.Image, mask: Image.Image, seed: int
    ) -> Result: ...


class Backend(Restoring, Protocol):
    """What the protocols ask of a backend."""

    def text_to_image(self, prompt: str, seed: int) -> Result: ...

    def inpaint(self, image: Image.Image, mask: Image.Image, prompt: str, seed: int) -> Result: ...

    def edit(
        self, image: Image.Image, source: str, target: str, method: str, seed: int
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
        import torch
        from diffusers import StableDiffusionPipeline

        # fp32 on the CPU, as the worker loads it there (committed weights are fp16).
        self.pipeline = StableDiffusionPipeline.from_pretrained(
            self.pipeline_dir, safety_checker=None, dtype=torch.float32
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


@dataclass
class WorkerBackend:
    """A profile's models loaded by the worker's own loader and run by its own task
    runners, in this process (no queue, no HTTP): the claims' runs on one machine.
    `restorer`: what inpaint jobs and `restore` use (None: the colour fallback)."""

    models_dir: Path
    profile_name: str = "toy"
    restorer: object | None = None

    def __post_init__(self) -> None:
        import torch

        from services.worker.loading import load_models
        from services.worker.profiles import get_profile, local_sources
        from services.worker.testing.tiny_models import build_tiny

        self.profile = get_profile(self.profile_name)
        for source in local_sources(self.profile):
            build_tiny(source.name, self.models_dir)
        self.models = load_models(
            self.profile,
            self.models_dir,
            torch.device("cpu"),
            torch.float32,
            components=("inpainting", "editing"),
        )

    def _request(self, task: Task, prompt: str, seed: int) -> GenerationRequest:
        from services.common.contract import GenerationRequest

        request = GenerationRequest(task=task, prompt=prompt)
        request.seed = seed
        return request

    def text_to_image(self, prompt: str, seed: int) -> Result:
        from services.common.contract import Task
        from services.worker.pipelines.text_to_image import resolve_params, run_text_to_image

        params = resolve_params(self._request(Task.TASK_T2I, prompt, seed), self.profile)  # type: ignore[arg-type]
        return Result(run_text_to_image(self.models.text_to_image, params).images[0])

    def inpaint(self, image: Image.Image, mask: Image.Image, prompt: str, seed: int) -> Result:
        from services.common.contract import Task
        from services.worker.masks import load_mask
        from services.worker.pipelines.inpainting import resolve_inpaint_params, run_inpainting
        from services.worker.restorers import COLOR_RESTORER

        request = self._request(Task.TASK_INPAINT, prompt, seed)
        pixels = load_mask(mask, image.size)
        params = resolve_inpaint_params(request, self.profile, image, pixels)  # type: ignore[arg-type]
        restorer = self.restorer or COLOR_RESTORER
        assert self.models.inpainting is not None
        result = run_inpainting(self.models.inpainting, params, restorer=restorer)  # type: ignore[arg-type]
        return Result(result.images[0], getattr(restorer, "name", None))

    def edit(self, image: Image.Image, source: str, target: str, method: str, seed: int) -> Result:
        from services.common.contract import EditMethod, Task
        from services.worker.pipelines.editing import resolve_edit_params, run_edit

        request = self._request(Task.TASK_EDIT, target, seed)
        request.edit.source_caption = source  # type: ignore[attr-defined]
        request.edit.method = (
            EditMethod.EDIT_METHOD_P2P if method == "p2p" else EditMethod.EDIT_METHOD_DIFFEDIT
        )  # type: ignore[attr-defined]
        params = resolve_edit_params(request, self.profile, image)  # type: ignore[arg-type]
        assert self.models.editing is not None
        return Result(run_edit(self.models.editing, params).images[0])

    def restore(
        self, image: Image.Image, reference: Image.Image, mask: Image.Image, seed: int
    ) -> Result:
        return restore_with(self.restorer, image, reference, mask, seed)


def restore_with(
    restorer: object | None,
    image: Image.Image,
    reference: Image.Image,
    mask: Image.Image,
    seed: int,
) -> Result:
    """Run a worker restorer (None: the colour fallback) as a restore job does."""
    import numpy as np

    from services.worker.masks import load_mask
    from services.worker.restorers import COLOR_RESTORER

    chosen = restorer or COLOR_RESTORER
    pixels = chosen.restore(  # type: ignore[attr-defined]
        np.asarray(image.convert("RGB")),
        np.asarray(reference.convert("RGB")),
        load_mask(mask, image.size),
        seed,
    )
    return Result(Image.fromarray(pixels), chosen.name)  # type: ignore[attr-defined]


@dataclass
class RestorerBackend:
    """A restorer alone (the restoration protocol's rows)."""

    restorer: object | None

    def restore(
        self, image: Image.Image, reference: Image.Image, mask: Image.Image, seed: int
    ) -> Result:
        return restore_with(self.restorer, image, reference, mask, seed)
