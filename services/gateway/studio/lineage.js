// The conversation's images as a lineage tree: every image a job made hangs under the
// image the job started from (job.input_image_ids[0]); uploads and plain t2i results are
// roots. Built from the conversation's job listing (GET /v1/jobs?conversation_id=) plus
// the page's own re-runs; selecting a node shows its chain from the gateway
// (GET /v1/conversations/{id}?image_id=) and continues the design from it.

import { h } from "./dom.js";
import { ApiError } from "./api.js";

/** @typedef {{id: string, url: string, width: number, height: number, task: string|null,
 *   parent: string|null, children: Node[]}} Node */

export class LineageTree {
  /**
   * @param {import("./api.js").LlmgaClient} api
   * @param {HTMLElement} element  where the tree is drawn
   * @param {HTMLElement} chain    where the selected image's chain is written
   * @param {(image: import("./workspace.js").WorkingImage) => void} onSelect
   */
  constructor(api, element, chain, onSelect) {
    this.api = api;
    this.element = element;
    this.chain = chain;
    this.onSelect = onSelect;
    /** @type {Map<string, import("./api.js").Job>} jobs outside the conversation (re-runs) */
    this.extraJobs = new Map();
    /** @type {Map<string, import("./workspace.js").WorkingImage>} uploads the page made */
    this.uploads = new Map();
    this.conversationId = /** @type {string|null} */ (null);
  }

  /** @param {import("./api.js").Job} job */
  addJob(job) {
    if (job.conversation_id !== this.conversationId) this.extraJobs.set(job.id, job);
  }

  /** @param {import("./workspace.js").WorkingImage} image */
  addUpload(image) {
    this.uploads.set(image.id, image);
  }

  /** Read the conversation's jobs and draw the tree again. */
  async refresh() {
    const jobs = [...this.extraJobs.values()];
    if (this.conversationId) {
      let cursor;
      // A few pages at most: a studio conversation rarely holds more than 100 jobs.
      for (let page = 0; page < 5; page++) {
        const listed = await this.api.jobs.list({ conversation_id: this.conversationId, limit: 100, cursor });
        jobs.push(...listed.data);
        cursor = listed.next_cursor;
        if (!cursor) break;
      }
    }
    this.draw(buildTree(jobs, this.uploads));
  }

  /** @param {Node[]} roots */
  draw(roots) {
    const render = (/** @type {Node} */ node) => {
      const thumbnail = h("img", { alt: "", width: 48, height: 48 });
      this.api.imageSrc(node.url).then((src) => (thumbnail.src = src), () => {});
      const label = `${node.task ?? "upload"} · ${node.id} (${node.width}×${node.height})`;
      const button = h(
        "button",
        { type: "button", class: "lineage-node", "data-image-id": node.id, onclick: () => this.select(node) },
        thumbnail,
        h("span", {}, label),
      );
      return h(
        "li",
        { role: "treeitem", "aria-label": label, "aria-expanded": node.children.length ? "true" : false },
        button,
        node.children.length ? h("ul", { role: "group" }, ...node.children.map(render)) : null,
      );
    };
    this.element.replaceChildren(...roots.map(render));
    this.element.hidden = roots.length === 0;
  }

  /** @param {Node} node */
  async select(node) {
    this.onSelect({ id: node.id, url: node.url, width: node.width, height: node.height });
    this.chain.textContent = "";
    if (!this.conversationId) return;
    try {
      const conversation = await this.api.conversations.get(this.conversationId, { imageId: node.id });
      const steps = [...(conversation.lineage ?? [])].reverse();
      this.chain.textContent = `How ${node.id} was made: ${steps.map((s) => s.task ?? "upload").join(" → ")}`;
    } catch (error) {
      // An image of a re-run outside the conversation has no chain there.
      if (!(error instanceof ApiError && error.status === 404)) throw error;
    }
  }
}

/**
 * Nodes for every image of the succeeded jobs (and the uploads they started from).
 * @param {import("./api.js").Job[]} jobs
 * @param {Map<string, import("./workspace.js").WorkingImage>} uploads
 * @returns {Node[]} the roots, oldest first
 */
export function buildTree(jobs, uploads) {
  /** @type {Map<string, Node>} */
  const nodes = new Map();
  const ordered = [...jobs].sort((a, b) => (a.created_at ?? 0) - (b.created_at ?? 0));
  for (const job of ordered) {
    if (job.status !== "succeeded") continue;
    const parent = job.input_image_ids?.[0] ?? null;
    if (parent && !nodes.has(parent)) {
      const upload = uploads.get(parent);
      nodes.set(parent, {
        id: parent,
        url: upload?.url ?? `/v1/images/${parent}`,
        width: upload?.width ?? 0,
        height: upload?.height ?? 0,
        task: null,
        parent: null,
        children: [],
      });
    }
    const task = job.task === "t2i" && parent ? "similar" : job.task;
    for (const image of job.images) {
      if (!nodes.has(image.id)) nodes.set(image.id, { ...image, task, parent, children: [] });
    }
  }
  const roots = [];
  for (const node of nodes.values()) {
    const parent = node.parent ? nodes.get(node.parent) : null;
    if (parent) parent.children.push(node);
    else roots.push(node);
  }
  return roots;
}
