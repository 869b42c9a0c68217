// Mask painting over the current image: brush, eraser, rectangle, clear. The canvas has the image's own pixel
// size (CSS scales it with the image), and the mask sent to the server follows the upstream convention: a PNG
// of the image's size, transparent (alpha 0) where the edit may change pixels, opaque everywhere else.

const PAINT = "#ff2d6f";

export class MaskPainter {
  constructor(canvas, { onChange = () => {} } = {}) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d", { willReadFrequently: true });
    this.tool = "brush";
    this.size = 32;
    this.enabled = false;
    this.onChange = onChange;
    this.painted = false;
    this._stroke = null;
    canvas.addEventListener("pointerdown", (event) => this._down(event));
    canvas.addEventListener("pointermove", (event) => this._move(event));
    canvas.addEventListener("pointerup", (event) => this._up(event));
    canvas.addEventListener("pointercancel", (event) => this._up(event));
  }

  /** Match the image's pixel size; a new size clears the mask (it would not fit any more). */
  fit(width, height) {
    if (this.canvas.width === width && this.canvas.height === height) return;
    this.canvas.width = width;
    this.canvas.height = height;
    this.clear();
  }

  setEnabled(enabled) {
    this.enabled = enabled;
    this.canvas.classList.toggle("painting", enabled);
  }

  clear() {
    this.context.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.painted = false;
    this.onChange(this);
  }

  /** True when some pixel is painted. */
  hasPaint() {
    if (!this.painted) return false;
    const { data } = this.context.getImageData(0, 0, this.canvas.width, this.canvas.height);
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return true;
    return false;
  }

  /** The mask as a PNG data URL: alpha 0 where painted (even faintly, at a stroke's soft edge), 255 elsewhere. */
  toDataUrl() {
    const { width, height } = this.canvas;
    const painted = this.context.getImageData(0, 0, width, height).data;
    const out = document.createElement("canvas");
    out.width = width;
    out.height = height;
    const context = out.getContext("2d");
    const mask = context.createImageData(width, height);
    for (let i = 0; i < painted.length; i += 4) mask.data[i + 3] = painted[i + 3] > 0 ? 0 : 255;
    context.putImageData(mask, 0, 0);
    return out.toDataURL("image/png");
  }

  _point(event) {
    const box = this.canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) / box.width) * this.canvas.width,
      y: ((event.clientY - box.top) / box.height) * this.canvas.height,
    };
  }

  _scale() {
    const box = this.canvas.getBoundingClientRect();
    return box.width ? this.canvas.width / box.width : 1;
  }

  _down(event) {
    if (!this.enabled || event.button !== 0) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    const start = this._point(event);
    this._stroke = { start, last: start, snapshot: null };
    if (this.tool === "rect") {
      this._stroke.snapshot = this.context.getImageData(0, 0, this.canvas.width, this.canvas.height);
    } else {
      this._line(start, start);
    }
  }

  _move(event) {
    if (!this._stroke) return;
    const point = this._point(event);
    if (this.tool === "rect") {
      this.context.putImageData(this._stroke.snapshot, 0, 0);
      this._rect(this._stroke.start, point);
    } else {
      this._line(this._stroke.last, point);
    }
    this._stroke.last = point;
  }

  _up(event) {
    if (!this._stroke) return;
    this._move(event);
    this._stroke = null;
    this.painted = true;
    this.onChange(this);
  }

  _line(from, to) {
    const context = this.context;
    context.save();
    context.globalCompositeOperation = this.tool === "eraser" ? "destination-out" : "source-over";
    context.strokeStyle = PAINT;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.lineWidth = this.size * this._scale();
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(to.x + 0.01, to.y);
    context.stroke();
    context.restore();
  }

  _rect(from, to) {
    this.context.save();
    this.context.fillStyle = PAINT;
    this.context.fillRect(Math.min(from.x, to.x), Math.min(from.y, to.y), Math.abs(to.x - from.x),
      Math.abs(to.y - from.y));
    this.context.restore();
  }
}
