"""Denoising several images in one pipeline call: the images of one job, or of several
compatible jobs (services/worker/batching.py gathers those).

A batch is a list of rows, one per image: each job ("member") contributes its
`num_images` rows in order, image i of a job seeded with the job's seed + i through its own
`torch.Generator`. diffusers draws each row's initial noise from that row's generator
(`randn_tensor` with a list of generators), so a row starts from exactly the noise the
one-image job with that seed starts from; only the arithmetic of a larger batch may differ
in the last bits.

`DenoisingBatch` is the step callback of the call (`callback_on_step_end`): after every
step it reports each member's progress and previews, and when a member's progress callback
raises (canceled, deleted, past its time limit) it takes that member's rows out of every
tensor the loop carries and out of the scheduler's per-sample state, so the other members
go on at the smaller batch. This is the documented way of changing a pipeline's batch
between steps (diffusers' "dynamic classifier-free guidance" callback slices
`prompt_embeds` the same way).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from services.worker.metrics import step_timer
from services.worker.pipelines.common import (
    GenerationResult,
    LatentsCallback,
    ProgressCallback,
    ResolvedParams,
    SDPipeline,
    image_generator,
    is_sdxl,
    synchronize,
)
from services.worker.prompt_encoding import EncodedPrompts


@dataclass(frozen=True)
class BatchMember:
    """One job's share of a batch: its parameters (its `num_images` rows) and its progress
    callback (may raise to stop the job between two steps; may carry `on_latents`)."""

    params: ResolvedParams
    on_progress: ProgressCallback | None = None


class _EveryMemberStopped(Exception):
    """Raised out of the pipeline call when no member is left to denoise."""


def equal_shape_groups(encodings: Sequence[EncodedPrompts]) -> list[list[int]]:
    """Indices of `encodings` grouped by the shape of their text conditioning: prompts of
    different lengths (75-token chunks) give embeddings of different sequence lengths,
    which cannot share one tensor. Order is kept within and across groups."""
    groups: dict[tuple[tuple[int, ...], ...], list[int]] = {}
    for index, encoded in enumerate(encodings):
        shape = tuple(
            tuple(value.shape) if value is not None else ()
            for value in encoded.pipeline_kwargs().values()
        )
        groups.setdefault(shape, []).append(index)
    return list(groups.values())


class DenoisingBatch:
    """The rows of one pipeline call and its step callback (module docstring)."""

    def __init__(
        self,
        pipeline: SDPipeline,
        members: Sequence[BatchMember],
        encodings: Sequence[EncodedPrompts],
    ) -> None:
        self.members = list(members)
        self.encodings = list(encodings)
        # One generator per row, seed + i for image i of each member. diffusers keeps this
        # very list (a stochastic scheduler draws from it every step): rows are removed
        # from it in place.
        self.generators = [image_generator(seed) for m in members for seed in m.params.seeds]
        self.size = len(self.generators)  # images at the start: the batch size recorded
        self.live = list(range(len(self.members)))  # members still denoising, in row order
        self.stopped: dict[int, BaseException] = {}
        self.denoise_s = 0.0
        self._sdxl = is_sdxl(pipeline)
        self._last_shown = [0] * len(self.members)
        self._tick = step_timer()  # llmga_worker_denoise_step_duration_seconds

    # -- inputs of the pipeline call ---------------------------------------------------------

    def prompt_kwargs(self) -> dict[str, Any]:
        """Every member's encodings, repeated once per image, stacked in row order."""
        stacked: dict[str, Any] = {}
        for key, first in self.encodings[0].pipeline_kwargs().items():
            if first is None:  # no guidance: no negative embeddings for anyone
                stacked[key] = None
                continue
            stacked[key] = torch.cat(
                [
                    encoded.pipeline_kwargs()[key].repeat_interleave(member.params.num_images, 0)
                    for member, encoded in zip(self.members, self.encodings, strict=True)
                ]
            )
        return stacked

    def per_row(self, values: Sequence[Any]) -> list[Any]:
        """One value per member (e.g. its input image) repeated once per image: per row."""
        return [
            value
            for member, value in zip(self.members, values, strict=True)
            for _ in range(member.params.num_images)
        ]

    def denoise(self, pipeline: SDPipeline, **call: Any) -> torch.Tensor | None:
        """Call `pipeline` with `call` plus this batch's prompts, generators and step
        callback, for latents: those of the members still live at its end, in row order,
        or None when every member stopped. Its time is every member's `denoise_s`."""
        started = time.perf_counter()
        try:
            # diffusers annotates some pipelines' outputs and callbacks loosely (a tuple
            # output, a two-argument callback); with return_dict on it is the output object.
            run: Any = pipeline
            output = run(
                **self.prompt_kwargs(),
                **call,
                generator=self.generators,
                output_type="latent",
                callback_on_step_end=self,
                callback_on_step_end_tensor_inputs=list(pipeline._callback_tensor_inputs),
            )
            latents: torch.Tensor | None = output.images
        except _EveryMemberStopped:
            latents = None
        synchronize(pipeline._execution_device)
        self.denoise_s = time.perf_counter() - started
        return latents

    def live_rows(self, latents: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """(member index, its rows of `latents`) for each member still live."""
        rows, start = [], 0
        for index in self.live:
            count = self.members[index].params.num_images
            rows.append((index, latents[start : start + count]))
            start += count
        return rows

    def member_generators(self, index: int) -> list[torch.Generator]:
        """The generators of member `index`'s rows (live members only)."""
        start = sum(self.members[i].params.num_images for i in self.live[: self.live.index(index)])
        return self.generators[start : start + self.members[index].params.num_images]

    # -- the step callback -----------------------------------------------------------------

    def __call__(
        self, pipeline: SDPipeline, step: int, _timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """Report every live member's progress; take out the rows of those that stop. It
        receives every tensor the pipeline lets a callback change, so that a stopped
        member's rows leave all of them."""
        self._tick()
        latents = callback_kwargs["latents"]
        rows = {index: member_rows for index, member_rows in self.live_rows(latents)}
        leaving = []
        for index in self.live:
            try:
                self._report(index, step, pipeline.num_timesteps, rows[index])
            except Exception as error:  # the member's own stop (or failure), not the batch's
                self.stopped[index] = error
                leaving.append(index)
        if not leaving:
            return callback_kwargs
        keep = self._rows_kept(leaving)
        self.live = [index for index in self.live if index not in leaving]
        if not self.live:
            raise _EveryMemberStopped
        return self._take_rows(pipeline, callback_kwargs, keep, rows=latents.shape[0])

    def _report(self, index: int, step: int, num_timesteps: int, latents: torch.Tensor) -> None:
        """Member `index`'s progress after the pipeline's evaluation `step` (0-based).

        Progress counts `params.denoise_steps` per image and all of a member's images step
        together: after `done` steps, `done * num_images` of `total_steps` are done. The
        scheduler may run a different number of model evaluations than steps (PNDM runs one
        more than asked), so the pipeline's own count (`num_timesteps`) is mapped onto
        them: the last evaluation always reports the total, never more."""
        member = self.members[index]
        on_progress = member.on_progress
        if on_progress is None:
            return
        params = member.params
        # Rounded up: the first evaluation already shows progress.
        done = -(-(step + 1) * params.denoise_steps // max(num_timesteps, 1))
        on_progress(done * params.num_images, params.total_steps)
        on_latents: LatentsCallback | None = getattr(on_progress, "on_latents", None)
        if on_latents is None or done == self._last_shown[index]:
            return  # the scheduler may map two evaluations onto one step: show it once
        self._last_shown[index] = done
        for image_index in range(params.num_images):
            on_latents(
                image_index,
                done,
                done * params.num_images,
                params.total_steps,
                latents[image_index],
                self._sdxl,
            )

    def _rows_kept(self, leaving: list[int]) -> torch.Tensor:
        """Indices of the current rows that belong to members staying."""
        kept: list[int] = []
        start = 0
        for index in self.live:
            count = self.members[index].params.num_images
            if index not in leaving:
                kept += range(start, start + count)
            start += count
        return torch.tensor(kept, dtype=torch.long)

    def _take_rows(
        self, pipeline: SDPipeline, callback_kwargs: dict[str, Any], keep: torch.Tensor, rows: int
    ) -> dict[str, Any]:
        """Keep only rows `keep` of the `rows` in the loop's tensors, the scheduler's
        per-sample state and the generators. With guidance, conditioning tensors hold
        2 x rows (unconditional rows first, then conditional, as diffusers stacks them)."""
        doubled = torch.cat([keep, keep + rows])

        def take(value: Any) -> Any:
            if not isinstance(value, torch.Tensor) or value.ndim == 0:
                return value
            if value.shape[0] == rows:
                return value[keep.to(value.device)]
            if value.shape[0] == 2 * rows:
                return value[doubled.to(value.device)]
            return value

        taken = {key: take(value) for key, value in callback_kwargs.items()}
        # Multistep schedulers (PNDM, DPM-Solver) keep earlier model outputs and samples,
        # one row per image: every latents-shaped tensor they hold. Their schedules are
        # one-dimensional and never match.
        latent_ndim = callback_kwargs["latents"].ndim
        scheduler = pipeline.scheduler
        for name, value in vars(scheduler).items():
            if isinstance(value, torch.Tensor) and value.ndim == latent_ndim:
                setattr(scheduler, name, take(value))
            elif isinstance(value, list) and any(
                isinstance(item, torch.Tensor) and item.ndim == latent_ndim for item in value
            ):
                setattr(scheduler, name, [take(item) for item in value])
        self.generators[:] = [self.generators[int(row)] for row in keep]
        return taken


def finished(
    outcomes: Sequence[GenerationResult | BaseException | None],
) -> list[GenerationResult | BaseException]:
    """The members' outcomes once every member has one (a result or what stopped it)."""
    missing = [index for index, outcome in enumerate(outcomes) if outcome is None]
    if missing:
        raise RuntimeError(f"batch members {missing} ended without an outcome")
    return [outcome for outcome in outcomes if outcome is not None]
