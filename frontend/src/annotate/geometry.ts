// Label geometry in image pixels (x right, y down), the same convention as the API and
// workers/ml/polygons.py. Pure functions, unit-tested: masks <-> COCO RLE, polygons ->
// masks (even-odd, so holes cut out), masks -> polygons (contour trace + simplification).

export type Point = [number, number];

export interface BoxShape {
  type: "box";
  x: number;
  y: number;
  width: number;
  height: number;
  defect_class: number;
}

export interface PolygonShape {
  type: "polygon";
  points: Point[];
  holes?: Point[][];
  defect_class: number;
}

/** Uncompressed COCO RLE: column-major run lengths, the first run counts zeros. */
export interface Rle {
  size: [number, number]; // [height, width]
  counts: number[];
}

export interface MaskShape {
  type: "mask";
  rle: Rle;
  defect_class: number;
}

export type Shape = BoxShape | PolygonShape | MaskShape;

export interface Mask {
  width: number;
  height: number;
  data: Uint8Array; // row-major, 0 or 1
}

export function emptyMask(width: number, height: number): Mask {
  return { width, height, data: new Uint8Array(width * height) };
}

export function encodeRle(mask: Mask): Rle {
  const { width, height, data } = mask;
  const counts: number[] = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const value = data[y * width + x]! ? 1 : 0;
      if (value !== current) {
        counts.push(run);
        run = 0;
        current = value;
      }
      run++;
    }
  }
  counts.push(run);
  return { size: [height, width], counts };
}

export function decodeRle(rle: Rle): Mask {
  const [height, width] = rle.size;
  const mask = emptyMask(width, height);
  let index = 0;
  let value = 0;
  for (const count of rle.counts) {
    if (value) {
      for (let i = index; i < index + count; i++) {
        const x = Math.floor(i / height);
        const y = i - x * height;
        mask.data[y * width + x] = 1;
      }
    }
    index += count;
    value ^= 1;
  }
  if (index !== width * height) throw new Error(`RLE covers ${index} pixels, the mask has ${width * height}`);
  return mask;
}

export function maskArea(mask: Mask): number {
  let area = 0;
  for (const value of mask.data) area += value;
  return area;
}

export function iou(a: Mask, b: Mask): number {
  let inter = 0;
  let union = 0;
  for (let i = 0; i < a.data.length; i++) {
    const p = a.data[i]!;
    const q = b.data[i]!;
    inter += p & q;
    union += p | q;
  }
  return union ? inter / union : 1;
}

/** Fill polygon rings (outer ring and holes) into ``mask`` with the even-odd rule at pixel
 * centres, value 1 (or 0 to erase). */
export function fillRings(mask: Mask, rings: Point[][], value: 0 | 1 = 1): void {
  const { width, height } = mask;
  let minY = Infinity;
  let maxY = -Infinity;
  for (const ring of rings) for (const [, y] of ring) {
    minY = Math.min(minY, y);
    maxY = Math.max(maxY, y);
  }
  const y0 = Math.max(0, Math.ceil(minY - 0.5));
  const y1 = Math.min(height - 1, Math.floor(maxY - 0.5));
  const crossings: number[] = [];
  for (let y = y0; y <= y1; y++) {
    const cy = y + 0.5;
    crossings.length = 0;
    for (const ring of rings) {
      for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
        const [xi, yi] = ring[i]!;
        const [xj, yj] = ring[j]!;
        if (yi > cy !== yj > cy) crossings.push(xi + ((cy - yi) / (yj - yi)) * (xj - xi));
      }
    }
    crossings.sort((a, b) => a - b);
    for (let k = 0; k + 1 < crossings.length; k += 2) {
      const from = Math.max(0, Math.ceil(crossings[k]! - 0.5));
      const to = Math.min(width - 1, Math.floor(crossings[k + 1]! - 0.5));
      mask.data.fill(value, y * width + from, from <= to ? y * width + to + 1 : y * width + from);
    }
  }
}

export function rasterize(shapes: Shape[], width: number, height: number): Mask {
  const mask = emptyMask(width, height);
  for (const shape of shapes) {
    if (shape.type === "polygon") fillRings(mask, [shape.points, ...(shape.holes ?? [])]);
    else if (shape.type === "box") {
      fillRings(mask, [
        [
          [shape.x, shape.y],
          [shape.x + shape.width, shape.y],
          [shape.x + shape.width, shape.y + shape.height],
          [shape.x, shape.y + shape.height],
        ],
      ]);
    } else {
      const decoded = decodeRle(shape.rle);
      for (let i = 0; i < decoded.data.length; i++) if (decoded.data[i]) mask.data[i] = 1;
    }
  }
  return mask;
}

/** Ramer-Douglas-Peucker on a closed ring; keeps at least 3 points. */
export function simplify(ring: Point[], tolerance: number): Point[] {
  if (ring.length <= 3) return ring;
  const keep = new Uint8Array(ring.length);
  keep[0] = keep[ring.length - 1] = 1;
  const stack: [number, number][] = [[0, ring.length - 1]];
  while (stack.length) {
    const [first, last] = stack.pop()!;
    const [ax, ay] = ring[first]!;
    const [bx, by] = ring[last]!;
    const length = Math.hypot(bx - ax, by - ay) || 1;
    let worst = -1;
    let index = -1;
    for (let i = first + 1; i < last; i++) {
      const [px, py] = ring[i]!;
      const distance = Math.abs((bx - ax) * (ay - py) - (ax - px) * (by - ay)) / length;
      if (distance > worst) {
        worst = distance;
        index = i;
      }
    }
    if (worst > tolerance && index > 0) {
      keep[index] = 1;
      stack.push([first, index], [index, last]);
    }
  }
  const result = ring.filter((_, i) => keep[i]);
  return result.length >= 3 ? result : ring.slice(0, 3);
}

/** Outer boundaries of the 8-connected regions of ``mask`` as polygons on pixel corners
 * (square tracing), simplified with ``tolerance`` pixels. Holes are not traced. */
export function traceMask(mask: Mask, tolerance = 0.75): Point[][] {
  const { width, height, data } = mask;
  const at = (x: number, y: number) => (x >= 0 && y >= 0 && x < width && y < height ? data[y * width + x]! : 0);
  const seen = new Uint8Array(width * height);
  const polygons: Point[][] = [];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!at(x, y) || seen[y * width + x] || at(x - 1, y)) continue;
      // A region's top-left boundary pixel not yet traced: walk its outline along pixel edges.
      const ring = traceFrom(x, y, at);
      markRegion(x, y, mask, seen);
      if (ring.length >= 3) polygons.push(simplify(ring, tolerance));
    }
  }
  return polygons;
}

function traceFrom(sx: number, sy: number, at: (x: number, y: number) => number): Point[] {
  // Walk the boundary between inside and outside pixels, keeping inside on the right.
  // Directions: 0 right, 1 down, 2 left, 3 up (corner grid coordinates).
  const ring: Point[] = [];
  let x = sx;
  let y = sy;
  let dir = 0;
  const startX = x;
  const startY = y;
  const dx = [1, 0, -1, 0];
  const dy = [0, 1, 0, -1];
  let guard = 0;
  do {
    ring.push([x, y]);
    // Pixels ahead-left and ahead-right of the current edge direction.
    for (let turn = 0; turn < 4; turn++) {
      const d = (dir + 3 + turn) % 4; // try left, straight, right, back
      const left = pixelLeftOf(x, y, d);
      const right = pixelRightOf(x, y, d);
      if (at(right[0], right[1]) && !at(left[0], left[1])) {
        dir = d;
        break;
      }
    }
    x += dx[dir]!;
    y += dy[dir]!;
    if (++guard > 4 * 1_000_000) break;
  } while (x !== startX || y !== startY);
  return dedupeCollinear(ring);
}

function pixelRightOf(x: number, y: number, dir: number): [number, number] {
  // The pixel to the right of the edge leaving corner (x, y) in direction dir.
  return dir === 0 ? [x, y] : dir === 1 ? [x - 1, y] : dir === 2 ? [x - 1, y - 1] : [x, y - 1];
}

function pixelLeftOf(x: number, y: number, dir: number): [number, number] {
  return dir === 0 ? [x, y - 1] : dir === 1 ? [x, y] : dir === 2 ? [x - 1, y] : [x - 1, y - 1];
}

function dedupeCollinear(ring: Point[]): Point[] {
  const out: Point[] = [];
  for (let i = 0; i < ring.length; i++) {
    const prev = ring[(i + ring.length - 1) % ring.length]!;
    const point = ring[i]!;
    const next = ring[(i + 1) % ring.length]!;
    const cross = (point[0] - prev[0]) * (next[1] - point[1]) - (point[1] - prev[1]) * (next[0] - point[0]);
    if (cross !== 0) out.push(point);
  }
  return out;
}

function markRegion(sx: number, sy: number, mask: Mask, seen: Uint8Array): void {
  const { width, height, data } = mask;
  const stack = [sy * width + sx];
  seen[sy * width + sx] = 1;
  while (stack.length) {
    const index = stack.pop()!;
    const x = index % width;
    const y = (index - x) / width;
    // 8-connected, as the tracer walks through pixels that touch at a corner.
    for (const [nx, ny] of [
      [x + 1, y],
      [x - 1, y],
      [x, y + 1],
      [x, y - 1],
      [x + 1, y + 1],
      [x - 1, y - 1],
      [x + 1, y - 1],
      [x - 1, y + 1],
    ] as const) {
      if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
      const n = ny * width + nx;
      if (data[n] && !seen[n]) {
        seen[n] = 1;
        stack.push(n);
      }
    }
  }
}

export function polygonArea(points: Point[]): number {
  let area = 0;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    area += (points[j]![0] + points[i]![0]) * (points[j]![1] - points[i]![1]);
  }
  return Math.abs(area / 2);
}

export function pointInRings(x: number, y: number, rings: Point[][]): boolean {
  let inside = false;
  for (const ring of rings) {
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const [xi, yi] = ring[i]!;
      const [xj, yj] = ring[j]!;
      if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
    }
  }
  return inside;
}

/** Paint a disc of radius r (image pixels) into the mask: the brush and the eraser. */
export function paintDisc(mask: Mask, cx: number, cy: number, r: number, value: 0 | 1): void {
  const x0 = Math.max(0, Math.floor(cx - r));
  const x1 = Math.min(mask.width - 1, Math.ceil(cx + r));
  const y0 = Math.max(0, Math.floor(cy - r));
  const y1 = Math.min(mask.height - 1, Math.ceil(cy + r));
  const r2 = r * r;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const ddx = x + 0.5 - cx;
      const ddy = y + 0.5 - cy;
      if (ddx * ddx + ddy * ddy <= r2) mask.data[y * mask.width + x] = value;
    }
  }
}

/** A stroke from (ax, ay) to (bx, by): discs every half radius, so fast drags leave no gaps. */
export function paintStroke(mask: Mask, a: Point, b: Point, r: number, value: 0 | 1): void {
  const steps = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]) / Math.max(0.5, r / 2)));
  for (let i = 0; i <= steps; i++) {
    const t = i / steps;
    paintDisc(mask, a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, r, value);
  }
}
