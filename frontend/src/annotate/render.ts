// Draws the image (pyramid tiles) and the labels on one canvas. Geometry is cached as
// Path2D per shape and masks as downscaled preview canvases, so a pan or zoom frame is a
// transform and a few thousand path fills, whatever the image size.

import type { Mask, Point } from "./geometry";
import type { EditorShape } from "./document";
import { type Pyramid, type TileRef, type View, visibleTiles } from "./viewport";

const PREVIEW_MAX = 2048;

export interface Palette {
  colorOf(defectClass: number): string;
}

export interface Overlay {
  selected: EditorShape | null;
  suggestions: EditorShape[];
  draft: Point[] | null; // polygon being drawn, or box corners
  cursor: Point | null;
  /** The station's inspection region in image pixels: outside it is dimmed. */
  region?: { x: number; y: number; width: number; height: number } | null;
  /** Ignore zones in image pixels: shaded, the models see them blanked. */
  zones?: { x: number; y: number; width: number; height: number }[];
}

export class Renderer {
  private readonly paths = new WeakMap<object, Path2D>();
  private readonly previews = new WeakMap<Mask, HTMLCanvasElement>();
  private readonly tiles = new Map<string, ImageBitmap | "loading" | "failed">();
  readonly frameTimes: number[] = [];
  private pending = false;

  constructor(
    readonly canvas: HTMLCanvasElement,
    private readonly pyramid: Pyramid,
    private readonly tileUrl: (tile: TileRef) => string,
  ) {}

  /** Redraw on the next animation frame (several requests in one frame draw once). */
  request(draw: () => void): void {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      draw();
    });
  }

  draw(view: View, shapes: EditorShape[], palette: Palette, overlay: Overlay): void {
    const started = performance.now();
    const ctx = this.canvas.getContext("2d")!;
    const ratio = window.devicePixelRatio || 1;
    const width = this.canvas.width / ratio;
    const height = this.canvas.height / ratio;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#111827";
    ctx.fillRect(0, 0, width, height);
    ctx.setTransform(ratio * view.scale, 0, 0, ratio * view.scale, ratio * view.x, ratio * view.y);
    ctx.imageSmoothingEnabled = view.scale < 2;
    this.drawTiles(ctx, view, width, height);
    const line = 1.5 / view.scale;
    if (overlay.region) this.drawRegion(ctx, overlay.region, line);
    for (const zone of overlay.zones ?? []) this.drawZone(ctx, zone, line);
    this.drawShapeLayer(ctx, view, width, height, ratio, shapes, palette, overlay);
    if (overlay.draft && overlay.draft.length) {
      ctx.beginPath();
      const [first, ...rest] = overlay.draft;
      ctx.moveTo(first![0], first![1]);
      for (const [x, y] of rest) ctx.lineTo(x, y);
      if (overlay.cursor) ctx.lineTo(overlay.cursor[0], overlay.cursor[1]);
      ctx.strokeStyle = "#fbbf24";
      ctx.lineWidth = line;
      ctx.stroke();
    }
    // Chromium records canvas commands and rasterises later; a one-pixel read forces the
    // raster now, so a benchmark (which sets this flag) times the whole frame.
    if ((window as unknown as { __loupeFlushFrames?: boolean }).__loupeFlushFrames) ctx.getImageData(0, 0, 1, 1);
    this.frameTimes.push(performance.now() - started);
    if (this.frameTimes.length > 5000) this.frameTimes.splice(0, 1000);
  }

  /** Dim the image outside the inspection region and outline the region, dashed. */
  private drawRegion(ctx: CanvasRenderingContext2D, region: { x: number; y: number; width: number; height: number }, line: number): void {
    const { width, height } = this.pyramid;
    const outside = new Path2D();
    outside.rect(0, 0, width, height);
    outside.rect(region.x, region.y, region.width, region.height);
    ctx.save();
    ctx.fillStyle = "rgba(0, 0, 0, 0.45)";
    ctx.fill(outside, "evenodd");
    ctx.setLineDash([6 * line, 4 * line]);
    ctx.strokeStyle = "#ffc914";
    ctx.lineWidth = line;
    ctx.strokeRect(region.x, region.y, region.width, region.height);
    ctx.restore();
  }

  private drawZone(ctx: CanvasRenderingContext2D, zone: { x: number; y: number; width: number; height: number }, line: number): void {
    ctx.save();
    ctx.fillStyle = "rgba(0, 0, 0, 0.45)";
    ctx.fillRect(zone.x, zone.y, zone.width, zone.height);
    ctx.strokeStyle = "#e4572e";
    ctx.lineWidth = line;
    ctx.strokeRect(zone.x, zone.y, zone.width, zone.height);
    ctx.restore();
  }

  // --- the label layer ---------------------------------------------------------------------
  // Thousands of filled polygons cost tens of milliseconds to rasterise in software. They are
  // drawn once into an offscreen layer (the view plus a margin); while the person pans or
  // zooms, frames only move and scale that bitmap, and the layer is redrawn sharp when the
  // view has been still for a moment or the labels change.

  private layer: { canvas: HTMLCanvasElement; view: View; key: unknown[]; margin: number } | null = null;
  private settleTimer: number | null = null;
  private layerDirty = true;
  onSettle: (() => void) | null = null;

  /** The labels changed in place (a brush stroke, a dragged vertex): redraw the layer. */
  invalidateLayer(): void {
    this.layerDirty = true;
  }

  private drawShapeLayer(
    ctx: CanvasRenderingContext2D,
    view: View,
    width: number,
    height: number,
    ratio: number,
    shapes: EditorShape[],
    palette: Palette,
    overlay: Overlay,
  ): void {
    const key = [shapes, overlay.selected, overlay.suggestions];
    const layer = this.layer;
    const sameLabels = layer !== null && !this.layerDirty && key.every((k, i) => k === layer.key[i]);
    if (sameLabels && layer) {
      const k = view.scale / layer.view.scale;
      const inside =
        view.x - layer.view.x * k <= layer.margin * k + 1 &&
        view.y - layer.view.y * k <= layer.margin * k + 1 &&
        (layer.canvas.width / ratio - layer.margin) * k + (view.x - layer.view.x * k) >= width - 1 &&
        (layer.canvas.height / ratio - layer.margin) * k + (view.y - layer.view.y * k) >= height - 1;
      if (inside) {
        // Move (and scale) the cached layer: the layer's (0, 0) sits at image point
        // (-layer.view.x - margin) / layer.view.scale.
        ctx.save();
        ctx.setTransform(ratio * k, 0, 0, ratio * k, ratio * (view.x - layer.view.x * k - layer.margin * k), ratio * (view.y - layer.view.y * k - layer.margin * k));
        ctx.drawImage(layer.canvas, 0, 0, layer.canvas.width / ratio, layer.canvas.height / ratio);
        ctx.restore();
        if (Math.abs(k - 1) > 1e-9 || view.x !== layer.view.x || view.y !== layer.view.y) this.settleSoon();
        return;
      }
    }
    this.renderLayer(view, width, height, ratio, shapes, palette, overlay, key);
    const fresh = this.layer!;
    ctx.save();
    ctx.setTransform(ratio, 0, 0, ratio, -ratio * fresh.margin, -ratio * fresh.margin);
    ctx.drawImage(fresh.canvas, 0, 0, fresh.canvas.width / ratio, fresh.canvas.height / ratio);
    ctx.restore();
  }

  private settleSoon(): void {
    if (this.settleTimer !== null) window.clearTimeout(this.settleTimer);
    this.settleTimer = window.setTimeout(() => {
      this.settleTimer = null;
      this.layerDirty = true;
      this.onSettle?.();
    }, 150);
  }

  private renderLayer(
    view: View,
    width: number,
    height: number,
    ratio: number,
    shapes: EditorShape[],
    palette: Palette,
    overlay: Overlay,
    key: unknown[],
  ): void {
    const margin = Math.round(Math.max(width, height) / 4);
    const canvas = this.layer?.canvas ?? document.createElement("canvas");
    const w = Math.round((width + 2 * margin) * ratio);
    const h = Math.round((height + 2 * margin) * ratio);
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const ctx = canvas.getContext("2d")!;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.setTransform(ratio * view.scale, 0, 0, ratio * view.scale, ratio * (view.x + margin), ratio * (view.y + margin));
    // Only what can show: shapes whose box meets the layer.
    const x0 = (-margin - view.x) / view.scale;
    const y0 = (-margin - view.y) / view.scale;
    const x1 = (width + margin - view.x) / view.scale;
    const y1 = (height + margin - view.y) / view.scale;
    const line = 1.5 / view.scale;
    for (const shape of shapes) {
      if (!this.meets(shape, x0, y0, x1, y1)) continue;
      this.drawShape(ctx, shape, palette.colorOf(shape.defect_class), line, shape === overlay.selected, false);
    }
    for (const shape of overlay.suggestions) this.drawShape(ctx, shape, palette.colorOf(shape.defect_class), line, false, true);
    this.layer = { canvas, view: { ...view }, key, margin };
    this.layerDirty = false;
  }

  private readonly bounds = new WeakMap<object, [number, number, number, number]>();

  private meets(shape: EditorShape, x0: number, y0: number, x1: number, y1: number): boolean {
    if (shape.type === "mask") return true;
    let box = this.bounds.get(shape);
    if (!box) {
      if (shape.type === "box") box = [shape.x, shape.y, shape.x + shape.width, shape.y + shape.height];
      else {
        box = [Infinity, Infinity, -Infinity, -Infinity];
        for (const [x, y] of shape.points) {
          box[0] = Math.min(box[0], x);
          box[1] = Math.min(box[1], y);
          box[2] = Math.max(box[2], x);
          box[3] = Math.max(box[3], y);
        }
      }
      this.bounds.set(shape, box);
    }
    return box[2] >= x0 && box[0] <= x1 && box[3] >= y0 && box[1] <= y1;
  }

  private drawTiles(ctx: CanvasRenderingContext2D, view: View, width: number, height: number): void {
    for (const tile of visibleTiles(this.pyramid, view, width, height)) {
      const bitmap = this.tile(tile);
      const w = Math.min(tile.size, this.pyramid.width - tile.x);
      const h = Math.min(tile.size, this.pyramid.height - tile.y);
      if (bitmap) ctx.drawImage(bitmap, tile.x, tile.y, w, h);
      else this.drawCoarser(ctx, tile);
    }
  }

  /** While a tile loads, the coarsest loaded tile covering it stands in. */
  private drawCoarser(ctx: CanvasRenderingContext2D, tile: TileRef): void {
    for (let level = this.pyramid.levels - 1; level > tile.level; level--) {
      const span = this.pyramid.tile_size * 2 ** level;
      const col = Math.floor(tile.x / span);
      const row = Math.floor(tile.y / span);
      const cached = this.tiles.get(`${level}/${col}/${row}`);
      if (cached && typeof cached !== "string") {
        const w = Math.min(span, this.pyramid.width - col * span);
        const h = Math.min(span, this.pyramid.height - row * span);
        const scale = cached.width / w;
        const sx = (tile.x - col * span) * scale;
        const sy = (tile.y - row * span) * scale;
        const tw = Math.min(tile.size, this.pyramid.width - tile.x);
        const th = Math.min(tile.size, this.pyramid.height - tile.y);
        ctx.drawImage(cached, sx, sy, tw * scale, th * scale, tile.x, tile.y, tw, th);
        return;
      }
    }
  }

  private tile(tile: TileRef): ImageBitmap | null {
    const key = `${tile.level}/${tile.col}/${tile.row}`;
    const cached = this.tiles.get(key);
    if (cached && typeof cached !== "string") return cached;
    if (!cached) {
      this.tiles.set(key, "loading");
      fetch(this.tileUrl(tile), { credentials: "same-origin" })
        .then((response) => (response.ok ? response.blob() : Promise.reject(new Error(String(response.status)))))
        .then((blob) => createImageBitmap(blob))
        .then((bitmap) => {
          this.tiles.set(key, bitmap);
          this.onTile?.();
        })
        .catch(() => this.tiles.set(key, "failed"));
    }
    return null;
  }

  onTile: (() => void) | null = null;

  /** Forget the cached geometry of a shape whose points changed in place. */
  invalidate(shape: object): void {
    this.paths.delete(shape);
    this.bounds.delete(shape);
    this.layerDirty = true;
  }

  /** Repaint the preview of a mask in the given image rectangle (after a brush stroke). */
  updateMask(mask: Mask, x0 = 0, y0 = 0, x1 = mask.width, y1 = mask.height): void {
    const preview = this.previews.get(mask);
    if (preview) this.paintPreview(mask, preview, x0, y0, x1, y1);
    this.layerDirty = true;
  }

  private drawShape(
    ctx: CanvasRenderingContext2D,
    shape: EditorShape,
    color: string,
    line: number,
    selected: boolean,
    suggestion: boolean,
  ): void {
    if (shape.type === "mask") {
      ctx.globalAlpha = suggestion ? 0.35 : 0.5;
      ctx.drawImage(this.preview(shape.mask, color), 0, 0, shape.mask.width, shape.mask.height);
      ctx.globalAlpha = 1;
      return;
    }
    const path = this.path(shape);
    ctx.fillStyle = color;
    ctx.globalAlpha = suggestion ? 0.12 : 0.25;
    ctx.fill(path, "evenodd");
    ctx.globalAlpha = 1;
    ctx.strokeStyle = color;
    ctx.lineWidth = selected ? line * 2 : line;
    ctx.setLineDash(suggestion ? [6 * line, 4 * line] : []);
    ctx.stroke(path);
    ctx.setLineDash([]);
    if (selected && shape.type === "polygon") {
      ctx.fillStyle = "#fbbf24";
      const r = 4 * line;
      for (const ring of [shape.points, ...(shape.holes ?? [])]) for (const [x, y] of ring) ctx.fillRect(x - r, y - r, 2 * r, 2 * r);
    }
  }

  private path(shape: Exclude<EditorShape, { type: "mask" }>): Path2D {
    let path = this.paths.get(shape);
    if (!path) {
      path = new Path2D();
      if (shape.type === "box") path.rect(shape.x, shape.y, shape.width, shape.height);
      else {
        for (const ring of [shape.points, ...(shape.holes ?? [])]) {
          ring.forEach(([x, y], i) => (i ? path!.lineTo(x, y) : path!.moveTo(x, y)));
          path.closePath();
        }
      }
      this.paths.set(shape, path);
    }
    return path;
  }

  private preview(mask: Mask, color: string): HTMLCanvasElement {
    let preview = this.previews.get(mask);
    if (!preview) {
      const scale = Math.min(1, PREVIEW_MAX / Math.max(mask.width, mask.height));
      preview = document.createElement("canvas");
      preview.width = Math.max(1, Math.round(mask.width * scale));
      preview.height = Math.max(1, Math.round(mask.height * scale));
      preview.dataset.color = color;
      this.previews.set(mask, preview);
      this.paintPreview(mask, preview, 0, 0, mask.width, mask.height);
    }
    return preview;
  }

  private paintPreview(mask: Mask, preview: HTMLCanvasElement, x0: number, y0: number, x1: number, y1: number): void {
    const ctx = preview.getContext("2d")!;
    const scale = preview.width / mask.width;
    const px0 = Math.max(0, Math.floor(x0 * scale));
    const py0 = Math.max(0, Math.floor(y0 * scale));
    const px1 = Math.min(preview.width, Math.ceil(x1 * scale));
    const py1 = Math.min(preview.height, Math.ceil(y1 * scale));
    if (px1 <= px0 || py1 <= py0) return;
    const image = ctx.createImageData(px1 - px0, py1 - py0);
    const [r, g, b] = rgb(preview.dataset.color ?? "#e4572e");
    for (let py = py0; py < py1; py++) {
      const my = Math.min(mask.height - 1, Math.floor(py / scale));
      for (let px = px0; px < px1; px++) {
        const mx = Math.min(mask.width - 1, Math.floor(px / scale));
        if (mask.data[my * mask.width + mx]) {
          const o = ((py - py0) * (px1 - px0) + (px - px0)) * 4;
          image.data[o] = r;
          image.data[o + 1] = g;
          image.data[o + 2] = b;
          image.data[o + 3] = 255;
        }
      }
    }
    ctx.putImageData(image, px0, py0);
  }
}

function rgb(hex: string): [number, number, number] {
  const match = /^#([0-9a-f]{6})$/i.exec(hex);
  const value = match ? parseInt(match[1]!, 16) : 0xe4572e;
  return [(value >> 16) & 255, (value >> 8) & 255, value & 255];
}
