// Mask painting for `jaxstyle serve`: one region per style, painted over the photo. Loaded before
// app.js, which owns the page; this file only keeps the canvases.
//
// Each region keeps an offscreen canvas of white strokes on black: exactly the greyscale image
// that the CLI's --style-mask reads, so the server checks and saves it as it is. Painting one
// region paints black into the others, so a pixel belongs to one style (a label image); the
// server feathers the edges as the CLI does. The visible canvas shows each region in its colour
// over the photo, drawn with the same strokes.
"use strict";

const MASK_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4"];
// The masks' long side: the server stretches them to the output, and a brush is no sharper.
const MASK_LONG_SIDE = 512;

class Painter {
  constructor(canvas, onStroke) {
    this.canvas = canvas;
    this.onStroke = onStroke;  // called when a stroke ends
    this.regions = [];  // {choice: {style, builtin, title}, colour, mask: canvas, painted}
    this.active = 0;
    this.erasing = false;
    this.brush = 24;  // diameter in the visible canvas's CSS pixels
    this.last = null;
    canvas.addEventListener("pointerdown", (event) => this.down(event));
    canvas.addEventListener("pointermove", (event) => this.move(event));
    for (const type of ["pointerup", "pointercancel"]) canvas.addEventListener(type, (event) => this.up(event));
  }

  // A fresh set of regions for a photo of width x height, the first with ``choice``.
  reset(width, height, choice) {
    const scale = Math.min(1, MASK_LONG_SIDE / Math.max(width, height));
    this.canvas.width = Math.max(1, Math.round(width * scale));
    this.canvas.height = Math.max(1, Math.round(height * scale));
    this.regions = []; this.active = 0;
    if (choice) this.add(choice);
  }

  add(choice) {
    if (this.regions.length >= MASK_COLOURS.length) return null;
    const mask = document.createElement("canvas");
    mask.width = this.canvas.width; mask.height = this.canvas.height;
    const context = mask.getContext("2d");
    context.fillStyle = "#000"; context.fillRect(0, 0, mask.width, mask.height);
    const region = { choice, colour: MASK_COLOURS[this.regions.length], mask, painted: false };
    this.regions.push(region);
    this.active = this.regions.length - 1;
    return region;
  }

  clear() {
    for (const region of this.regions) {
      const context = region.mask.getContext("2d");
      context.fillStyle = "#000"; context.fillRect(0, 0, region.mask.width, region.mask.height);
      region.painted = false;
    }
    this.canvas.getContext("2d").clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  get painted() { return this.regions.some((region) => region.painted); }
  get complete() { return this.regions.length > 0 && this.regions.every((region) => region.painted); }

  // One PNG data URL per region, in order; null before anything is painted.
  masks() {
    return this.painted ? this.regions.map((region) => region.mask.toDataURL("image/png")) : null;
  }

  point(event) {
    const box = this.canvas.getBoundingClientRect();
    const scale = this.canvas.width / box.width;
    return { x: (event.clientX - box.left) * scale, y: (event.clientY - box.top) * scale, scale };
  }

  down(event) {
    if (!this.regions.length) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    this.last = this.point(event);
    this.segment(this.last, this.last);
  }

  move(event) {
    if (!this.last) return;
    const next = this.point(event);
    this.segment(this.last, next);
    this.last = next;
  }

  up() {
    if (!this.last) return;
    this.last = null;
    if (!this.erasing) this.regions[this.active].painted = true;
    this.onStroke();
  }

  segment(from, to) {
    const width = this.brush * to.scale;
    const line = (context, colour, operation) => {
      context.globalCompositeOperation = operation;
      context.strokeStyle = colour; context.lineWidth = width; context.lineCap = "round"; context.lineJoin = "round";
      context.beginPath(); context.moveTo(from.x, from.y); context.lineTo(to.x, to.y); context.stroke();
    };
    this.regions.forEach((region, index) => {
      const mine = !this.erasing && index === this.active;
      line(region.mask.getContext("2d"), mine ? "#fff" : "#000", "source-over");
    });
    const shown = this.canvas.getContext("2d");
    if (this.erasing) line(shown, "#000", "destination-out");
    else line(shown, this.regions[this.active].colour, "source-over");
  }
}
