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
    for (const shape of shapes) this.drawShape(ctx, shape, palette.colorOf(shape.defect_class), line, shape === overlay.selected, false);
    for (const shape of overlay.suggestions) this.drawShape(ctx, shape, palette.colorOf(shape.defect_class), line, false, true);
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
    this.frameTimes.push(performance.now() - started);
    if (this.frameTimes.length > 5000) this.frameTimes.splice(0, 1000);
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
  }

  /** Repaint the preview of a mask in the given image rectangle (after a brush stroke). */
  updateMask(mask: Mask, x0 = 0, y0 = 0, x1 = mask.width, y1 = mask.height): void {
    const preview = this.previews.get(mask);
    if (preview) this.paintPreview(mask, preview, x0, y0, x1, y1);
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
