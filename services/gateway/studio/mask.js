// Mask painting for inpainting: a canvas over the working image, the image's own size in
// pixels (shown scaled by CSS). Painted = regenerate (white in the exported mask), the
// rest = keep (black), which is the gateway's mask rule.

const PAINT = "rgba(255, 255, 255, 1)";

export class MaskPainter {
  /**
   * @param {HTMLCanvasElement} canvas  laid over the image, same box
   * @param {{onPaint?: () => void}} [hooks]  onPaint: the user painted (switch to inpaint)
   */
  constructor(canvas, hooks = {}) {
    this.canvas = canvas;
    this.context = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d", { willReadFrequently: true }));
    this.onPaint = hooks.onPaint ?? (() => {});
    /** Brush diameter in image pixels. */
    this.brushSize = 16;
    /** @type {"paint"|"erase"} */
    this.mode = "paint";
    this.enabled = false;
    /** @type {{x: number, y: number}|null} */
    this.last = null;
    canvas.addEventListener("pointerdown", (event) => this.start(event));
    canvas.addEventListener("pointermove", (event) => this.move(event));
    canvas.addEventListener("pointerup", (event) => this.end(event));
    canvas.addEventListener("pointercancel", (event) => this.end(event));
  }

  /**
   * A fresh, empty mask for an image of this size.
   * @param {number} width
   * @param {number} height
   */
  reset(width, height) {
    this.canvas.width = width;
    this.canvas.height = height;
    this.clear();
  }

  clear() {
    this.context.clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  /** Painted becomes unpainted and the other way round. */
  invert() {
    const { width, height } = this.canvas;
    if (!width || !height) return;
    const pixels = this.context.getImageData(0, 0, width, height);
    const data = pixels.data;
    for (let i = 0; i < data.length; i += 4) {
      const painted = data[i + 3] >= 128;
      data[i] = data[i + 1] = data[i + 2] = 255;
      data[i + 3] = painted ? 0 : 255;
    }
    this.context.putImageData(pixels, 0, 0);
    this.onPaint();
  }

  /** Whether nothing is painted (the gateway refuses a mask that selects no pixel). */
  isEmpty() {
    const { width, height } = this.canvas;
    if (!width || !height) return true;
    const data = this.context.getImageData(0, 0, width, height).data;
    for (let i = 3; i < data.length; i += 4) if (data[i] >= 128) return false;
    return true;
  }

  /**
   * The mask as the gateway reads it: a PNG data URI, white = regenerate, black = keep.
   * @returns {string}
   */
  toDataUrl() {
    const out = document.createElement("canvas");
    out.width = this.canvas.width;
    out.height = this.canvas.height;
    const context = /** @type {CanvasRenderingContext2D} */ (out.getContext("2d"));
    context.fillStyle = "black";
    context.fillRect(0, 0, out.width, out.height);
    context.drawImage(this.canvas, 0, 0);
    return out.toDataURL("image/png");
  }

  /** @param {PointerEvent} event */
  start(event) {
    if (!this.enabled || event.button !== 0) return;
    this.canvas.setPointerCapture(event.pointerId);
    this.last = this.point(event);
    this.stroke(this.last, this.last);
  }

  /** @param {PointerEvent} event */
  move(event) {
    if (!this.last) return;
    const point = this.point(event);
    this.stroke(this.last, point);
    this.last = point;
  }

  /** @param {PointerEvent} event */
  end(event) {
    if (!this.last) return;
    this.last = null;
    if (this.canvas.hasPointerCapture(event.pointerId)) this.canvas.releasePointerCapture(event.pointerId);
    this.onPaint();
  }

  /**
   * The pointer in image pixels (the canvas is shown scaled).
   * @param {PointerEvent} event
   */
  point(event) {
    const box = this.canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * this.canvas.width) / box.width,
      y: ((event.clientY - box.top) * this.canvas.height) / box.height,
    };
  }

  /**
   * @param {{x: number, y: number}} from
   * @param {{x: number, y: number}} to
   */
  stroke(from, to) {
    const context = this.context;
    context.save();
    context.globalCompositeOperation = this.mode === "erase" ? "destination-out" : "source-over";
    context.strokeStyle = PAINT;
    context.lineWidth = this.brushSize;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    context.moveTo(from.x, from.y);
    // A dot when the pointer did not move (a click paints too).
    context.lineTo(to.x + (from.x === to.x && from.y === to.y ? 0.01 : 0), to.y);
    context.stroke();
    context.restore();
  }
}
