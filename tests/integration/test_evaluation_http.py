"""`make eval`'s harness against a real stack through its public API: a gateway and a
worker serving the `toy` profile (its committed trained weights), two cases per protocol.
The numbers themselves are the models' business (docs/toy-world.md); here the harness must
reach every task over HTTP and write a complete report, and the exactness the pipelines
guarantee (inpainting keeps every pixel outside the mask) must show in it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluation.__main__ import main as run_evaluation
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import HttpService, Namespace, start_gateway, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def toy_worker(
    namespace: Namespace, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real worker serving the toy profile."""
    with start_worker(
        namespace,
        tmp_path_factory.mktemp("models"),
        logs,
        env={"LLMGA_WORKER_PROFILE": "toy"},
    ) as name:
        yield name


@pytest.fixture(scope="module")
def gateway(namespace: Namespace, scripted: ScriptedMllm, logs: Path) -> Iterator[HttpService]:
    env = {**namespace.env(), "LLMGA_MLLM_BASE_URL": scripted.base_url}
    with start_gateway(env, logs) as service:
        yield service


def test_make_eval_runs_every_protocol_over_http_and_writes_its_report(
    gateway: HttpService, toy_worker: str, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    assert run_evaluation(["--base-url", gateway.url, "--out", str(out), "--count", "2"]) == 0

    report = json.loads((out / "report.json").read_text())
    sections = report["sections"]
    assert set(sections) == {
        "text-to-image (short captions)",
        "text-to-image (detailed captions)",
        "inpainting and outpainting",
        "editing",
        "restoration",
    }
    assert report["notes"]["backend"] == gateway.url
    for values in sections.values():
        assert values
        rates = {k: v for k, v in values.items() if "adherence" in k or k.endswith("_right")}
        assert all(0.0 <= v <= 1.0 for v in rates.values())
    inpainting = sections["inpainting and outpainting"]
    for name in ("inpaint_narrow", "inpaint_wide", "outpaint_narrow", "outpaint_wide"):
        assert inpainting[f"{name}_outside_max_levels"] == 0
    assert set(sections["editing"]) >= {"edit_p2p_attribute_right", "edit_diffedit_outside_l1"}
    # The worker's restorer ran (the colour fallback, without DiffRIR weights).
    assert "restore_color_seam_l1" in sections["restoration"]

    markdown = (out / "report.md").read_text()
    for section in sections:
        assert f"## {section}" in markdown
    charts = sorted(p.name for p in out.glob("*.png"))
    assert len(charts) == len(sections)
