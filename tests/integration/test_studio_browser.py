"""The studio (/studio) in a real browser: Debian's Chromium driven by Playwright, against
a real gateway (auth on, signed URLs and event tokens), a real worker on the tiny models
(a preview every 2 steps) and the scripted mllm. Each test does what a person does on the
page (types, paints with the mouse, drags, clicks) and checks what they would see, and the
pixels through the API. Screenshots go to the run's temporary directory."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import (
    Browser,
    FilePayload,
    Page,
    Route,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.support.images import fetch_pixels, noise
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import (
    HttpService,
    Namespace,
    create_api_key,
    start_gateway,
    start_worker,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHROMIUM = "/usr/bin/chromium"
SECRET = "studio-test-url-signing-secret-0123456789"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
REPLY = "Here it is. <gen_image>a small red fox in the snow</gen_image>"
# Jobs end within this (ms); the tiny models take well under a second a job.
JOB_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def worker(
    namespace: Namespace, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = {"LLMGA_WORKER_PREVIEW_EVERY": "2"}
    with start_worker(namespace, tmp_path_factory.mktemp("models"), logs, env=env) as name:
        yield name


@pytest.fixture(scope="module")
def gateway(namespace: Namespace, scripted: ScriptedMllm, logs: Path) -> Iterator[HttpService]:
    env = {
        **namespace.env(),
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
        "LLMGA_AUTH_REQUIRED": "true",
        "LLMGA_URL_SIGNING_SECRET": SECRET,
    }
    with start_gateway(env, logs) as service:
        yield service


@pytest.fixture(scope="module")
def key(namespace: Namespace) -> str:
    return create_api_key(namespace, "studio")


@pytest.fixture(scope="module")
def api(gateway: HttpService, key: str) -> Iterator[httpx.Client]:
    """The same API the page uses, for checking what it did."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # No browser download: the distribution's package (.ci/run installs it).
    assert Path(CHROMIUM).exists(), f"no {CHROMIUM}: apt-get install chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("studio-screenshots")


@pytest.fixture
def open_studio(browser: Browser, gateway: HttpService, scripted: ScriptedMllm) -> Iterator[Any]:
    """Opens /studio in a fresh browser context (its own sessionStorage) with a key typed
    into the page; fails the test on any uncaught error in the page."""
    scripted.reset()
    scripted.script(default=REPLY)
    errors: list[str] = []
    contexts = []

    def open_page(key: str | None, viewport: ViewportSize = DESKTOP) -> Page:
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{gateway.url}/studio")
        expect(page.get_by_role("heading", name="LLMGA studio")).to_be_visible()
        if key:
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Use key").click()
            expect(page.locator("#key-state")).to_contain_text("Key in use")
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, errors


def set_options(page: Page, **values: int) -> None:
    """Fill the generation settings (steps=3, width=64, ...)."""
    page.locator("#settings summary").click()
    for name, value in values.items():
        page.locator(f"#opt-{name}").fill(str(value))


def send(page: Page, message: str) -> None:
    page.get_by_label("Message", exact=True).fill(message)
    page.get_by_label("Message", exact=True).press("Enter")


def finished_card(page: Page, status: str = "succeeded") -> Any:
    """The first job card of the latest reply, once its job has `status` and every result
    image loaded."""
    card = page.locator(".turn.assistant").last.locator(".job-card").first
    expect(card).to_have_attribute("data-status", status, timeout=JOB_TIMEOUT_MS)
    if status == "succeeded":
        page.wait_for_function(
            """(card) => {
                const images = card.querySelectorAll('.results img');
                const loaded = [...images].every((i) => i.complete && i.naturalWidth > 0);
                return images.length > 0 && loaded;
            }""",
            arg=card.element_handle(),
            timeout=JOB_TIMEOUT_MS,
        )
    return card


def upload_by_picker(page: Page, pixels: np.ndarray) -> None:
    payload: FilePayload = {
        "name": "input.png",
        "mimeType": "image/png",
        "buffer": png_bytes(pixels),
    }
    page.locator("#upload-input").set_input_files(files=[payload])
    working_image_shown(page)


# A file as a drop on the image panel or a paste on the page delivers it: the browser's own
# DataTransfer, DragEvent and ClipboardEvent, as the OS would send them.
HAND_OVER = """([bytes, how]) => {
    const data = new DataTransfer();
    data.items.add(new File([new Uint8Array(bytes)], "image.png", {type: "image/png"}));
    const init = {bubbles: true, cancelable: true};
    if (how === "paste") {
        document.dispatchEvent(new ClipboardEvent("paste", {...init, clipboardData: data}));
        return;
    }
    const zone = document.getElementById("workspace");
    for (const type of ["dragover", "drop"]) {
        zone.dispatchEvent(new DragEvent(type, {...init, dataTransfer: data}));
    }
}"""


def working_image_shown(page: Page) -> None:
    """Wait until the uploaded image is the working image, loaded."""
    page.wait_for_function("document.getElementById('working-image').naturalWidth > 0")


def hand_over(page: Page, pixels: np.ndarray, how: str) -> None:
    """Give the page an image by drag and drop (`drop`) or the clipboard (`paste`)."""
    page.evaluate(HAND_OVER, [list(png_bytes(pixels)), how])


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def job_of(card: Any, api: httpx.Client) -> dict[str, Any]:
    job_id = card.get_attribute("data-job-id")
    job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
    return job


# --- tests ------------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
def test_a_chat_turn_streams_the_reply_and_ends_with_its_image(
    open_studio: Any, api: httpx.Client, screenshots: Path
) -> None:
    page = open_studio(None)
    # Without a key the gateway's 401 is said in words, and nothing is lost.
    send(page, "draw a fox")
    expect(page.get_by_role("alert")).to_contain_text("needs an API key")
    expect(page.get_by_label("Message", exact=True)).to_have_value("draw a fox")

    page.get_by_label("API key").fill(api.headers["Authorization"].removeprefix("Bearer "))
    page.get_by_role("button", name="Use key").click()
    set_options(page, width=64, height=64, steps=4, seed=3)
    send(page, "draw a fox")

    assistant = page.locator(".turn.assistant").last
    expect(assistant.locator(".reply")).to_have_text("Here it is.")
    expect(assistant.get_by_role("list", name="Generation prompts")).to_contain_text(
        "a small red fox in the snow"
    )
    card = finished_card(page)
    expect(card.get_by_label(re.compile("Prompt of job"))).to_have_value(
        "a small red fox in the snow"
    )
    job = job_of(card, api)
    assert job["status"] == "succeeded" and job["conversation_id"]
    image = job["images"][0]
    assert (image["width"], image["height"]) == (64, 64)
    shown = card.locator(".results img")
    assert shown.evaluate("(i) => [i.naturalWidth, i.naturalHeight]") == [64, 64]
    # The conversation's lineage tree holds the image; clicking it continues from it.
    node = page.locator(f'#lineage .lineage-node[data-image-id="{image["id"]}"]')
    expect(node).to_be_visible()
    node.click()
    expect(page.locator("#working-caption")).to_contain_text(image["id"])
    expect(page.locator("#lineage-chain")).to_contain_text("t2i")

    # The generation prompt, edited and run again: a new job with that prompt.
    card.get_by_label(re.compile("Prompt of job")).fill("a small blue fox")
    card.get_by_role("button", name="Run again").click()
    rerun = page.locator(".job-card").nth(1)
    expect(rerun).to_have_attribute("data-status", "succeeded", timeout=JOB_TIMEOUT_MS)
    rerun_job = job_of(rerun, api)
    assert rerun_job["prompt"] == "a small blue fox"
    rerun_image = rerun_job["images"][0]["id"]
    expect(page.locator(f'#lineage .lineage-node[data-image-id="{rerun_image}"]')).to_be_visible()

    page.locator("#settings summary").click()  # folded: the conversation gets the room
    page.screenshot(path=screenshots / "studio-chat.png")
    page.set_viewport_size(PHONE)
    page.screenshot(path=screenshots / "studio-phone.png", full_page=True)


@pytest.mark.usefixtures("worker")
def test_a_mask_painted_with_the_mouse_inpaints_only_the_painted_pixels(
    open_studio: Any, api: httpx.Client, key: str, screenshots: Path
) -> None:
    page = open_studio(key)
    picture = noise(64, 64, 11)
    upload_by_picker(page, picture)
    # Paint a stroke across the middle of the image with the mouse.
    box = page.locator("#mask-canvas").bounding_box()
    assert box is not None
    x0, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move(x0 + box["width"] * 0.4, y, steps=8)
    page.mouse.up()
    expect(page.get_by_label("Task")).to_have_value("inpaint")  # painting chose it
    set_options(page, steps=3, seed=5)
    send(page, "put a red apple there")
    card = finished_card(page)
    job = job_of(card, api)
    assert job["task"] == "inpaint" and job["mask_image_id"]

    uploaded = fetch_pixels(api, f"/v1/images/{job['input_image_ids'][0]}")
    assert np.array_equal(uploaded, picture)
    mask = fetch_pixels(api, f"/v1/images/{job['mask_image_id']}").mean(axis=2) >= 128
    # The stroke: from x 19 to 45 at y 32 with the 24 px brush (in image pixels): a band
    # through the middle, round at its ends.
    assert mask[32, 8:56].all() and mask[21:43, 32].all()
    assert not mask[:19].any() and not mask[46:].any() and not mask[:, :6].any()
    result = fetch_pixels(api, job["images"][0]["url"])
    assert np.array_equal(result[~mask], picture[~mask])
    assert not np.array_equal(result[mask], picture[mask])
    page.screenshot(path=screenshots / "studio-inpaint.png")


@pytest.mark.usefixtures("worker")
def test_dragging_a_side_outpaints_and_keeps_the_original(
    open_studio: Any, api: httpx.Client, key: str, screenshots: Path
) -> None:
    page = open_studio(key)
    picture = noise(64, 64, 12)
    hand_over(page, picture, "drop")  # dragged from the desktop onto the image panel
    working_image_shown(page)
    # Drag the right side outwards by what 32 image pixels are on the screen.
    shown_width = page.locator("#working-image").bounding_box()["width"]  # type: ignore[index]
    handle = page.get_by_role("slider", name="Extend the right side")
    box = handle.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 32 * shown_width / 64, y, steps=10)
    page.mouse.up()
    expect(page.locator("#outpaint-readout")).to_have_text("Extends right by 32 px.")
    expect(page.get_by_label("Task")).to_have_value("outpaint")
    set_options(page, steps=3, seed=6)
    page.get_by_label("Restore the generated region").uncheck()
    send(page, "a wider view")
    card = finished_card(page)
    job = job_of(card, api)
    assert job["task"] == "outpaint"
    assert job["restore"] is False and job["restore_used"] is None
    assert {side: job["outpaint"][side] for side in ("left", "top", "right", "bottom")} == {
        "left": 0,
        "top": 0,
        "right": 32,
        "bottom": 0,
    }
    result = fetch_pixels(api, job["images"][0]["url"])
    assert result.shape == (64, 96, 3)
    assert np.array_equal(result[:, :64], picture)
    shown = card.locator(".results img")
    assert shown.evaluate("(i) => [i.naturalWidth, i.naturalHeight]") == [96, 64]
    page.screenshot(path=screenshots / "studio-outpaint.png")


@pytest.mark.usefixtures("worker")
def test_progress_and_previews_appear_before_the_results_grid(
    open_studio: Any, api: httpx.Client, key: str
) -> None:
    page = open_studio(key)
    # What the person sees, in the order they see it: recorded by the page's own DOM.
    page.evaluate(
        """() => {
            window.seen = [];
            const note = (what) => { if (!window.seen.includes(what)) window.seen.push(what); };
            new MutationObserver(() => {
                const card = document.querySelector(".job-card");
                if (!card) return;
                if (card.querySelector("progress").value > 0) note("progress");
                if (card.querySelector(".previews img[src]")) note("preview");
                if (card.querySelector(".results img")) note("result");
            }).observe(document.getElementById("transcript"),
                       {subtree: true, childList: true, attributes: true});
        }"""
    )
    set_options(page, width=64, height=64, steps=16, n=2, seed=9)
    send(page, "two foxes")
    card = finished_card(page)
    seen = page.evaluate("window.seen")
    assert seen.index("progress") < seen.index("result"), seen
    assert seen.index("preview") < seen.index("result"), seen
    # n = 2: a grid of both images; the bar ended full.
    expect(card.locator(".results.grid img")).to_have_count(2)
    assert card.locator("progress").evaluate("(p) => [p.value, p.max]") == [32, 32]
    assert len(job_of(card, api)["images"]) == 2


@pytest.mark.usefixtures("worker")
def test_cancel_stops_a_running_job(open_studio: Any, api: httpx.Client, key: str) -> None:
    page = open_studio(key)
    set_options(page, width=128, height=128, steps=150, seed=1)
    send(page, "a long one")
    card = page.locator(".job-card").last
    expect(card).to_have_attribute("data-status", "running", timeout=JOB_TIMEOUT_MS)
    card.get_by_role("button", name="Cancel").click()
    expect(card).to_have_attribute("data-status", "canceled", timeout=JOB_TIMEOUT_MS)
    expect(card.get_by_role("button", name="Cancel")).to_be_hidden()
    job = job_of(card, api)
    assert job["status"] == "canceled" and job["images"] == []
    assert job["progress"]["step"] < job["progress"]["total"] == 150
    expect(card.locator(".results img")).to_have_count(0)


def test_a_rate_limited_request_shows_its_retry_time_on_a_phone(
    open_studio: Any, namespace: Namespace, scripted: ScriptedMllm, screenshots: Path
) -> None:
    # A key of its own: 2 requests per 120 s, so the third waits about 60 s.
    limited = create_api_key(namespace, "studio-limited", "--rate-limit", "2/120")
    scripted.script(default="Hello! What shall we draw?")
    page = open_studio(limited, PHONE)
    for text in ("hello", "hello again"):
        send(page, text)
        expect(page.locator(".turn.assistant .reply").last).to_have_text(
            "Hello! What shall we draw?"
        )
    send(page, "and again")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Too many requests")
    seconds = int(re.search(r"Try again in (\d+) seconds", alert.inner_text()).group(1))  # type: ignore[union-attr]
    assert 30 <= seconds <= 60
    expect(page.get_by_label("Message", exact=True)).to_have_value("and again")
    page.screenshot(path=screenshots / "studio-rate-limited-phone.png")


@pytest.mark.usefixtures("worker")
def test_a_pasted_image_edited_by_instruction_shows_both_captions(
    open_studio: Any, api: httpx.Client, key: str, scripted: ScriptedMllm
) -> None:
    # The mllm first describes the image (source caption), then answers the instruction.
    scripted.script(
        "<gen_image>a quiet street by day</gen_image>",
        "Done. <gen_image>a quiet street at night</gen_image>",
    )
    page = open_studio(key)
    # A file that only claims to be a PNG: the gateway's 422 is shown with its field.
    not_png: FilePayload = {"name": "fake.png", "mimeType": "image/png", "buffer": b"%PDF-1.4"}
    page.locator("#upload-input").set_input_files(files=[not_png])
    expect(page.get_by_role("alert")).to_contain_text("Not accepted: “image”:")
    picture = noise(64, 64, 13)
    hand_over(page, picture, "paste")  # Ctrl+V of an image anywhere on the page
    working_image_shown(page)
    page.get_by_label("Task").select_option("edit")
    set_options(page, steps=3, seed=2)
    send(page, "make it night")
    turn = page.locator(".turn.assistant").last
    expect(turn.locator(".source-caption")).to_have_text("The image shows: a quiet street by day")
    card = finished_card(page)
    captions = card.locator(".captions")
    expect(captions).to_contain_text("Instructionmake it night")
    expect(captions).to_contain_text("Source captiona quiet street by day")
    expect(captions).to_contain_text("Target captiona quiet street at night")
    job = job_of(card, api)
    assert job["task"] == "edit" and job["instruction"] == "make it night"
    assert np.array_equal(fetch_pixels(api, f"/v1/images/{job['input_image_ids'][0]}"), picture)


@pytest.mark.usefixtures("worker")
def test_a_job_card_reconnects_after_its_stream_drops(
    open_studio: Any, api: httpx.Client, key: str
) -> None:
    page = open_studio(key)
    # The network drops the job's first event stream (connection reset); the job runs for
    # seconds, so the card must reconnect to see it end.
    streams: list[str] = []

    def drop_the_first(route: Route) -> None:
        streams.append(route.request.url)
        if len(streams) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(re.compile(r"/v1/jobs/[^/]+/events"), drop_the_first)
    set_options(page, width=128, height=128, steps=150, seed=4)
    send(page, "through a bad network")
    card = finished_card(page)
    assert len(streams) == 2, streams
    assert card.locator("progress").evaluate("(p) => [p.value, p.max]") == [150, 150]
    assert job_of(card, api)["status"] == "succeeded"


def test_the_api_module_retries_after_retry_after_and_names_refused_fields(
    open_studio: Any, namespace: Namespace
) -> None:
    """api.js as another frontend would import it, in the page, against the gateway."""
    # One request per 2 s after the first: the second waits out a short Retry-After.
    paced = create_api_key(namespace, "studio-paced", "--rate-limit", "1/2")
    page = open_studio(None)
    outcome = page.evaluate(
        """async (key) => {
            const { LlmgaClient, ApiError } = await import("./api.js");
            const retries = [];
            const onRetry = (error, waitS) => retries.push([error.status, waitS]);
            const api = new LlmgaClient({ apiKey: key, onRetry });
            await api.jobs.list({ limit: 1 });
            const started = performance.now();
            const page = await api.jobs.list({ limit: 1 });
            const waitedMs = performance.now() - started;
            await new Promise((done) => setTimeout(done, 2100));
            let refused = null;
            try {
                await api.images.create({ task: "t2i", prompt: "a fox", n: 9 });
            } catch (error) {
                const { status, field, reason } = error;
                refused = error instanceof ApiError ? { status, field, reason } : String(error);
            }
            return { retries, waitedMs, listed: Array.isArray(page.data), refused };
        }""",
        paced,
    )
    assert outcome["listed"] and len(outcome["retries"]) == 1, outcome
    status, wait_s = outcome["retries"][0]
    assert status == 429 and 0 < wait_s <= 2
    assert outcome["waitedMs"] >= wait_s * 1000 - 50
    refused = outcome["refused"]
    assert refused["status"] == 422 and refused["field"] == "n" and "4" in refused["reason"]


@pytest.mark.usefixtures("worker")
def test_similar_then_controlnet_from_a_clicked_result(
    open_studio: Any, api: httpx.Client, key: str
) -> None:
    page = open_studio(key)
    picture = noise(64, 64, 14)
    upload_by_picker(page, picture)
    page.get_by_label("Task").select_option("similar")
    set_options(page, steps=3, seed=7)
    send(page, "something like this")
    similar = job_of(finished_card(page), api)
    upload_id = similar["input_image_ids"][0]
    assert similar["task"] == "t2i" and upload_id
    # Clicking the result continues from it: ControlNet with its edges.
    result = similar["images"][0]
    page.locator(f'.result-button[data-image-id="{result["id"]}"]').click()
    expect(page.locator("#working-caption")).to_contain_text(result["id"])
    page.get_by_label("Task").select_option("controlnet")
    send(page, "the same shapes as a watercolor")
    controlnet = job_of(finished_card(page), api)
    assert controlnet["task"] == "controlnet"
    assert controlnet["input_image_ids"] == [result["id"]]
    # The tree: the upload, its similar image under it, the ControlNet image under that.
    tree = page.locator("#lineage")
    child = tree.locator(f'li:has(> [data-image-id="{upload_id}"]) > ul > li')
    expect(child.locator(f'> [data-image-id="{result["id"]}"]')).to_be_visible()
    grandchild = controlnet["images"][0]["id"]
    expect(child.locator(f'> ul > li > [data-image-id="{grandchild}"]')).to_be_visible()
