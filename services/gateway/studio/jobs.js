// A card per job: status and a live progress bar from the job's event stream, the
// denoising previews, cancel, the results (a grid when n > 1), the prompt (editable, run
// again), and for edits the source and target captions.

import { ApiError, TERMINAL_STATUSES } from "./api.js";
import { describeError } from "./errors.js";
import { h } from "./dom.js";

/** Tasks whose output has the input image's size: no width/height on a re-run. */
const SIZED_BY_IMAGE = new Set(["inpaint", "outpaint", "edit"]);

export class JobCard {
  /**
   * @param {import("./api.js").LlmgaClient} api
   * @param {import("./api.js").Job} job  as the create answer gave it
   * @param {{onImage: (image: import("./workspace.js").WorkingImage) => void,
   *   onDone: (job: import("./api.js").Job) => void, onRerun: (job: import("./api.js").Job) => void,
   *   options: () => Record<string, any>, onError: (error: unknown) => void}} hooks
   *   onImage: a result was clicked (continue from it); onDone: the job ended;
   *   onRerun: a new job was queued from this one; options: the generation settings
   */
  constructor(api, job, hooks) {
    this.api = api;
    this.hooks = hooks;
    this.job = job;
    this.previews = new Map(); // image index -> <img>
    this.status = h("span", { class: "job-status" });
    this.progress = h("progress", { max: 1, value: 0, "aria-label": `Progress of job ${job.id}` });
    this.progressText = h("span", { class: "progress-text" });
    this.cancelButton = h("button", { type: "button", class: "cancel", onclick: () => this.cancel() }, "Cancel");
    this.previewBox = h("div", { class: "previews", "aria-label": "Previews while denoising" });
    this.results = h("div", { class: "results", role: "list", "aria-label": `Results of job ${job.id}` });
    this.errorText = h("p", { class: "job-error", role: "status" });
    this.prompt = /** @type {HTMLTextAreaElement} */ (
      h("textarea", { class: "prompt", rows: 2, value: job.prompt ?? "", "aria-label": `Prompt of job ${job.id}` })
    );
    this.captions = h("dl", { class: "captions" });
    this.rerunButton = h("button", { type: "button", onclick: () => this.rerun() }, "Run again");
    this.element = h(
      "article",
      { class: "job-card", "data-job-id": job.id, "aria-label": `Job ${job.id} (${job.task})` },
      h("header", {}, h("strong", {}, taskLabel(job)), " ", this.status, this.cancelButton),
      h("div", { class: "progress-row" }, this.progress, this.progressText),
      this.previewBox,
      this.results,
      this.errorText,
      this.captions,
      h(
        "details",
        { class: "prompt-box", open: true },
        h("summary", {}, "Generation prompt"),
        this.prompt,
        this.rerunButton,
      ),
    );
    this.render(job);
    this.stop = api.jobs.events(job, {
      onStatus: (view) => this.render(view),
      onPreview: (preview) => this.showPreview(preview),
      onReconnect: (attempt) => {
        this.progressText.textContent = `reconnecting (${attempt})…`;
      },
      onEnd: (view, error) => {
        if (error) this.errorText.textContent = describeError(error);
        if (view) hooks.onDone(view);
      },
    });
  }

  /** @param {import("./api.js").Job} job */
  render(job) {
    this.job = job;
    this.element.dataset.status = job.status;
    const { step, total } = job.progress ?? { step: 0, total: 0 };
    this.status.textContent = statusLabel(job);
    if (total > 0) {
      this.progress.max = total;
      this.progress.value = step;
      this.progressText.textContent = `step ${step} of ${total}`;
    }
    const ended = TERMINAL_STATUSES.has(job.status);
    this.cancelButton.hidden = ended;
    if (job.status === "succeeded") {
      this.previewBox.replaceChildren();
      this.showResults(job);
    }
    this.errorText.textContent = job.status === "failed" || job.status === "canceled" ? job.error ?? "" : "";
    this.showCaptions(job);
  }

  /** @param {import("./api.js").Preview} preview */
  async showPreview(preview) {
    if (TERMINAL_STATUSES.has(this.job.status)) return;
    let image = this.previews.get(preview.image_index);
    if (!image) {
      image = h("img", { class: "preview", width: 96, height: 96 });
      this.previews.set(preview.image_index, image);
      this.previewBox.append(image);
    }
    image.alt = `Preview of image ${preview.image_index + 1} at step ${preview.step} of ${preview.total}`;
    image.src = await this.api.imageSrc(preview.url);
  }

  /** @param {import("./api.js").Job} job */
  async showResults(job) {
    if (this.results.childElementCount) return;
    this.results.classList.toggle("grid", job.images.length > 1);
    for (const [index, image] of job.images.entries()) {
      const picture = h("img", {
        class: "result",
        alt: `Result ${index + 1} of job ${job.id} (seed ${image.seed})`,
        width: image.width,
        height: image.height,
      });
      const button = h(
        "button",
        {
          type: "button",
          class: "result-button",
          role: "listitem",
          title: "Continue from this image",
          "data-image-id": image.id,
          onclick: () => this.hooks.onImage(image),
        },
        picture,
      );
      this.results.append(button);
      picture.src = await this.api.imageSrc(image.url);
    }
  }

  /** @param {import("./api.js").Job} job */
  showCaptions(job) {
    const rows = [
      ["Instruction", job.instruction],
      ["Source caption", job.source_caption],
      ["Target caption", job.target_caption],
      ["Restored with", job.status === "succeeded" && job.restore_used ? job.restore_used : null],
      ["Queue position", job.status === "queued" && job.queue_position !== null ? String(job.queue_position) : null],
    ].filter(([, value]) => value);
    this.captions.replaceChildren(...rows.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
  }

  async cancel() {
    this.cancelButton.disabled = true;
    try {
      this.render(await this.api.jobs.cancel(this.job.id));
    } catch (error) {
      // 409: it ended meanwhile; the stream shows how.
      if (!(error instanceof ApiError && error.status === 409)) this.hooks.onError(error);
    } finally {
      this.cancelButton.disabled = false;
    }
  }

  /** Queue the same task again with the (edited) prompt, on the same inputs. */
  async rerun() {
    this.rerunButton.disabled = true;
    try {
      this.hooks.onRerun(await this.api.images.create(rerunRequest(this.job, this.prompt.value, this.hooks.options())));
    } catch (error) {
      this.hooks.onError(error);
    } finally {
      this.rerunButton.disabled = false;
    }
  }
}

/**
 * The POST /v1/images body that runs `job` again with `prompt`.
 * @param {import("./api.js").Job & Record<string, any>} job
 * @param {string} prompt
 * @param {Record<string, any>} options  the generation settings (steps, seed, n, size...)
 */
export function rerunRequest(job, prompt, options) {
  const source = job.input_image_ids?.[0];
  const request = { ...options, task: job.task, prompt };
  if (SIZED_BY_IMAGE.has(job.task)) {
    delete request.width;
    delete request.height;
  } else if (request.width === undefined && request.height === undefined && job.images?.[0]) {
    // No size in the settings: the size the job made, not the gateway's default.
    Object.assign(request, { width: job.images[0].width, height: job.images[0].height });
  }
  if (job.task === "inpaint") Object.assign(request, { image: { id: source }, mask: { id: job.mask_image_id } });
  if (job.task === "outpaint") {
    const { ratio, ...sides } = job.outpaint ?? {};
    Object.assign(request, { image: { id: source }, outpaint: ratio ? { ratio } : sides });
  }
  if (job.task === "inpaint" || job.task === "outpaint") {
    if (job.restore !== null) request.restore = job.restore;
    if (job.strength !== null) request.strength = job.strength;
  }
  if (job.task === "edit") {
    delete request.prompt;
    delete request.n;
    Object.assign(request, { image: { id: source }, source_caption: job.source_caption, target_caption: prompt });
  }
  if (job.task === "controlnet") Object.assign(request, { image: { id: source }, control: job.control ?? undefined });
  // Fields the task does not take.
  if (!["inpaint", "outpaint"].includes(job.task)) {
    delete request.restore;
    delete request.strength;
  }
  return request;
}

/** @param {import("./api.js").Job} job */
function taskLabel(job) {
  return job.task === "t2i" && job.input_image_ids?.length ? "similar (t2i)" : job.task;
}

/** @param {import("./api.js").Job} job */
function statusLabel(job) {
  if (job.status === "queued" && job.estimated_start_s) return `queued, starts in about ${Math.ceil(job.estimated_start_s)} s`;
  return job.status;
}
