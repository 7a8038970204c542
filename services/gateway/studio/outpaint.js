// Outpainting by dragging the sides of the working image: four handles on a frame around
// it; each drag (or arrow keys on a focused handle) sets how many image pixels that side
// grows by, in whole latent pixels (multiples of 8).

const STEP = 8;
const MAX_SIDE = 2048;
/** @typedef {"left"|"top"|"right"|"bottom"} Side */
/** @type {Side[]} */
export const SIDES = ["left", "top", "right", "bottom"];

export class OutpaintFrame {
  /**
   * @param {HTMLElement} frame   the dashed frame around the image (absolutely placed)
   * @param {HTMLElement} image   the shown image, for the display scale
   * @param {{onChange?: (extension: Record<Side, number>) => void}} [hooks]
   */
  constructor(frame, image, hooks = {}) {
    this.frame = frame;
    this.image = image;
    this.onChange = hooks.onChange ?? (() => {});
    /** @type {Record<Side, number>} image pixels added per side */
    this.extension = { left: 0, top: 0, right: 0, bottom: 0 };
    /** Image pixels per displayed pixel. */
    this.naturalWidth = 0;
    /** @type {Record<Side, HTMLButtonElement>} */
    this.handles = /** @type {any} */ ({});
    for (const side of SIDES) {
      const handle = /** @type {HTMLButtonElement} */ (frame.querySelector(`[data-side="${side}"]`));
      this.handles[side] = handle;
      this.wire(handle, side);
    }
    new ResizeObserver(() => this.layout()).observe(image);
  }

  /** @param {number} naturalWidth  the working image's width in pixels */
  reset(naturalWidth) {
    this.naturalWidth = naturalWidth;
    this.extension = { left: 0, top: 0, right: 0, bottom: 0 };
    this.layout();
  }

  /** Whether any side grows. */
  isEmpty() {
    return SIDES.every((side) => this.extension[side] === 0);
  }

  /** Image pixels per CSS pixel of the shown image. */
  scale() {
    const shown = this.image.getBoundingClientRect().width;
    return shown > 0 && this.naturalWidth > 0 ? this.naturalWidth / shown : 1;
  }

  /**
   * @param {Side} side
   * @param {number} pixels  image pixels, snapped to STEP and clamped
   */
  set(side, pixels) {
    const snapped = Math.min(MAX_SIDE, Math.max(0, Math.round(pixels / STEP) * STEP));
    if (snapped === this.extension[side]) return;
    this.extension[side] = snapped;
    this.layout();
    this.onChange({ ...this.extension });
  }

  layout() {
    const perPixel = 1 / this.scale();
    for (const side of SIDES) {
      this.frame.style[side] = `${-this.extension[side] * perPixel}px`;
      this.handles[side].setAttribute("aria-valuenow", String(this.extension[side]));
      this.handles[side].setAttribute("aria-valuetext", `${this.extension[side]} pixels`);
    }
    this.frame.classList.toggle("extended", !this.isEmpty());
  }

  /**
   * @param {HTMLButtonElement} handle
   * @param {Side} side
   */
  wire(handle, side) {
    const outward = side === "left" || side === "top" ? -1 : 1;
    const horizontal = side === "left" || side === "right";
    /** @type {{start: number, from: number}|null} */
    let drag = null;
    handle.addEventListener("pointerdown", (event) => {
      if (this.naturalWidth === 0) return;
      handle.setPointerCapture(event.pointerId);
      drag = { start: horizontal ? event.clientX : event.clientY, from: this.extension[side] };
      event.preventDefault();
    });
    handle.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const moved = ((horizontal ? event.clientX : event.clientY) - drag.start) * outward;
      this.set(side, drag.from + moved * this.scale());
    });
    const stop = () => {
      drag = null;
    };
    handle.addEventListener("pointerup", stop);
    handle.addEventListener("pointercancel", stop);
    handle.addEventListener("keydown", (event) => {
      const grow = { ArrowLeft: -outward, ArrowRight: outward, ArrowUp: -outward, ArrowDown: outward };
      const keys = horizontal ? ["ArrowLeft", "ArrowRight"] : ["ArrowUp", "ArrowDown"];
      if (!keys.includes(event.key)) return;
      event.preventDefault();
      const direction = /** @type {any} */ (grow)[event.key];
      this.set(side, this.extension[side] + direction * STEP * (event.shiftKey ? 8 : 1));
    });
  }
}
