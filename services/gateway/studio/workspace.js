// The working image: where an image comes from (upload by picker, drag and drop or paste;
// a result or lineage node clicked), and the tools that act on it: the mask painter
// (inpaint) and the outpaint frame.

import { MaskPainter } from "./mask.js";
import { OutpaintFrame } from "./outpaint.js";
import { byId } from "./dom.js";

/** @typedef {{id: string, url: string, width: number, height: number}} WorkingImage */

export class Workspace {
  /**
   * @param {import("./api.js").LlmgaClient} api
   * @param {{onImage: (image: WorkingImage|null) => void, onTool: (task: string) => void,
   *   onError: (error: unknown) => void, onBusy: (text: string) => void}} hooks
   *   onTool: the user painted (inpaint) or dragged a side (outpaint)
   */
  constructor(api, hooks) {
    this.api = api;
    this.hooks = hooks;
    /** @type {WorkingImage|null} */
    this.image = null;
    this.stage = byId("stage");
    this.picture = /** @type {HTMLImageElement} */ (byId("working-image"));
    this.caption = byId("working-caption");
    this.mask = new MaskPainter(/** @type {HTMLCanvasElement} */ (byId("mask-canvas")), {
      onPaint: () => hooks.onTool("inpaint"),
    });
    this.outpaint = new OutpaintFrame(byId("outpaint-frame"), this.picture, {
      onChange: (extension) => {
        byId("outpaint-readout").textContent = describeExtension(extension);
        if (!this.outpaint.isEmpty()) hooks.onTool("outpaint");
      },
    });
    this.wireUploads();
    this.wireMaskTools();
  }

  /**
   * Make `image` the working image (null: none): the mask and the extension start empty.
   * @param {WorkingImage|null} image
   */
  async use(image) {
    this.image = image;
    this.stage.hidden = !image;
    byId("drop-hint").hidden = !!image;
    if (image) {
      this.picture.src = await this.api.imageSrc(image.url);
      this.picture.alt = `Working image ${image.id}, ${image.width}×${image.height}`;
      this.caption.textContent = `${image.id} · ${image.width}×${image.height}`;
      this.mask.reset(image.width, image.height);
      this.mask.enabled = true;
      this.outpaint.reset(image.width);
    }
    byId("outpaint-readout").textContent = describeExtension(this.outpaint.extension);
    this.hooks.onImage(image);
  }

  /**
   * The task's inputs from the tools, or an error message saying what is missing.
   * @param {string} task
   * @returns {{inputs: Record<string, any>} | {missing: string}}
   */
  inputsFor(task) {
    if (task === "t2i") return { inputs: {} };
    if (!this.image) return { missing: "Upload an image or pick a result first." };
    if (task === "inpaint") {
      if (this.mask.isEmpty()) return { missing: "Paint the region to regenerate on the image first." };
      return { inputs: { mask: { b64: this.mask.toDataUrl() } } };
    }
    if (task === "outpaint") {
      if (this.outpaint.isEmpty()) return { missing: "Drag a side of the image outwards first." };
      const sides = Object.fromEntries(Object.entries(this.outpaint.extension).filter(([, px]) => px > 0));
      return { inputs: { outpaint: sides } };
    }
    return { inputs: {} };
  }

  /** Enable the tools that fit the chosen task. @param {string} task */
  showTools(task) {
    this.stage.dataset.task = task;
    byId("mask-tools").hidden = task !== "inpaint";
    byId("outpaint-tools").hidden = task !== "outpaint";
  }

  /** @param {Blob} file */
  async upload(file) {
    if (!file.type.startsWith("image/")) {
      this.hooks.onError(new Error(`“${/** @type {File} */ (file).name || "the file"}” is not an image`));
      return;
    }
    this.hooks.onBusy("Uploading…");
    try {
      const stored = await this.api.uploads.create(file);
      await this.use(stored);
      this.hooks.onBusy("");
    } catch (error) {
      this.hooks.onBusy("");
      this.hooks.onError(error);
    }
  }

  wireUploads() {
    const picker = /** @type {HTMLInputElement} */ (byId("upload-input"));
    picker.addEventListener("change", () => {
      if (picker.files?.[0]) this.upload(picker.files[0]);
      picker.value = "";
    });
    const dropZone = byId("workspace");
    dropZone.addEventListener("dragover", (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    });
    dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
    dropZone.addEventListener("drop", (event) => {
      event.preventDefault();
      dropZone.classList.remove("dragging");
      const file = event.dataTransfer?.files?.[0];
      if (file) this.upload(file);
    });
    // Paste anywhere on the page (an image copied to the clipboard).
    document.addEventListener("paste", (event) => {
      const item = [...(event.clipboardData?.items ?? [])].find((i) => i.type.startsWith("image/"));
      const file = item?.getAsFile();
      if (file) {
        event.preventDefault();
        this.upload(file);
      }
    });
  }

  wireMaskTools() {
    const size = /** @type {HTMLInputElement} */ (byId("brush-size"));
    const sizeOut = byId("brush-size-value");
    const setSize = () => {
      this.mask.brushSize = Number(size.value);
      sizeOut.textContent = `${size.value} px`;
    };
    size.addEventListener("input", setSize);
    setSize();
    const eraser = /** @type {HTMLInputElement} */ (byId("eraser"));
    eraser.addEventListener("change", () => {
      this.mask.mode = eraser.checked ? "erase" : "paint";
    });
    byId("mask-clear").addEventListener("click", () => this.mask.clear());
    byId("mask-invert").addEventListener("click", () => this.mask.invert());
    byId("outpaint-reset").addEventListener("click", () => {
      if (this.image) this.outpaint.reset(this.image.width);
      byId("outpaint-readout").textContent = describeExtension(this.outpaint.extension);
    });
  }
}

/** @param {Record<string, number>} extension */
function describeExtension(extension) {
  const grown = Object.entries(extension).filter(([, px]) => px > 0);
  return grown.length
    ? `Extends ${grown.map(([side, px]) => `${side} by ${px} px`).join(", ")}.`
    : "Drag a side of the image (or focus a handle and use the arrow keys) to extend it.";
}
