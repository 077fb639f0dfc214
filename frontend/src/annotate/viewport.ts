// Screen <-> image coordinates and which pyramid tiles a view needs.

export interface View {
  scale: number; // screen pixels per image pixel
  x: number; // screen position of image (0, 0)
  y: number;
}

export interface Pyramid {
  width: number;
  height: number;
  tile_size: number;
  levels: number; // level 0 is full resolution; level k is downscaled by 2^k
}

export interface TileRef {
  level: number;
  col: number;
  row: number;
  // Where the tile lies, in image pixels of level 0.
  x: number;
  y: number;
  size: number;
}

export function fit(imageWidth: number, imageHeight: number, screenWidth: number, screenHeight: number): View {
  const scale = Math.min(screenWidth / imageWidth, screenHeight / imageHeight);
  return { scale, x: (screenWidth - imageWidth * scale) / 2, y: (screenHeight - imageHeight * scale) / 2 };
}

export function toImage(view: View, sx: number, sy: number): [number, number] {
  return [(sx - view.x) / view.scale, (sy - view.y) / view.scale];
}

export function toScreen(view: View, ix: number, iy: number): [number, number] {
  return [ix * view.scale + view.x, iy * view.scale + view.y];
}

/** Zoom by ``factor`` keeping the image point under (sx, sy) where it is. */
export function zoomAt(view: View, factor: number, sx: number, sy: number, min = 0.01, max = 64): View {
  const scale = Math.min(max, Math.max(min, view.scale * factor));
  const applied = scale / view.scale;
  return { scale, x: sx - (sx - view.x) * applied, y: sy - (sy - view.y) * applied };
}

/** The coarsest level that still has at least one image pixel per screen pixel. */
export function levelFor(pyramid: Pyramid, scale: number): number {
  const level = Math.floor(Math.log2(1 / Math.max(scale, 1e-6)));
  return Math.max(0, Math.min(pyramid.levels - 1, level));
}

export function visibleTiles(pyramid: Pyramid, view: View, screenWidth: number, screenHeight: number): TileRef[] {
  const level = levelFor(pyramid, view.scale);
  const span = pyramid.tile_size * 2 ** level; // level-0 pixels per tile side
  const [ix0, iy0] = toImage(view, 0, 0);
  const [ix1, iy1] = toImage(view, screenWidth, screenHeight);
  const cols = Math.ceil(pyramid.width / span);
  const rows = Math.ceil(pyramid.height / span);
  const c0 = Math.max(0, Math.floor(ix0 / span));
  const c1 = Math.min(cols - 1, Math.floor(ix1 / span));
  const r0 = Math.max(0, Math.floor(iy0 / span));
  const r1 = Math.min(rows - 1, Math.floor(iy1 / span));
  const tiles: TileRef[] = [];
  for (let row = r0; row <= r1; row++) {
    for (let col = c0; col <= c1; col++) tiles.push({ level, col, row, x: col * span, y: row * span, size: span });
  }
  return tiles;
}
