import { describe, expect, it } from "vitest";
import {
  decodeRle,
  emptyMask,
  encodeRle,
  fillRings,
  iou,
  maskArea,
  paintStroke,
  type Point,
  pointInRings,
  polygonArea,
  rasterize,
  simplify,
  traceMask,
} from "../src/annotate/geometry";

function star(cx: number, cy: number, outer: number, inner: number, spikes = 7): Point[] {
  const points: Point[] = [];
  for (let i = 0; i < spikes * 2; i++) {
    const r = i % 2 ? inner : outer;
    const a = (Math.PI * i) / spikes;
    points.push([cx + r * Math.cos(a), cy + r * Math.sin(a)]);
  }
  return points;
}

describe("masks and COCO RLE", () => {
  it("round-trips through column-major RLE that starts with zeros", () => {
    const mask = emptyMask(5, 3);
    mask.data[0] = 1; // (0,0)
    mask.data[1 * 5 + 0] = 1; // (0,1)
    mask.data[2 * 5 + 4] = 1; // (4,2)
    const rle = encodeRle(mask);
    expect(rle).toEqual({ size: [3, 5], counts: [0, 2, 12, 1] });
    expect(Array.from(decodeRle(rle).data)).toEqual(Array.from(mask.data));
  });

  it("refuses an RLE that does not cover the mask", () => {
    expect(() => decodeRle({ size: [2, 2], counts: [1, 1] })).toThrow(/covers 2 pixels/);
  });
});

describe("rasterizing polygons", () => {
  it("fills a square by pixel centres", () => {
    const mask = rasterize([{ type: "polygon", points: [[2, 2], [6, 2], [6, 6], [2, 6]], defect_class: 1 }], 10, 10);
    expect(maskArea(mask)).toBe(16);
  });

  it("cuts holes out (even-odd)", () => {
    const outer: Point[] = [[0, 0], [10, 0], [10, 10], [0, 10]];
    const hole: Point[] = [[3, 3], [7, 3], [7, 7], [3, 7]];
    const mask = rasterize([{ type: "polygon", points: outer, holes: [hole], defect_class: 1 }], 10, 10);
    expect(maskArea(mask)).toBe(100 - 16);
    expect(pointInRings(5, 5, [outer, hole])).toBe(false);
    expect(pointInRings(1, 1, [outer, hole])).toBe(true);
  });

  it("matches the polygon's area within a pixel row of rounding", () => {
    const points = star(64, 64, 50, 22);
    const area = maskArea(rasterize([{ type: "polygon", points, defect_class: 1 }], 128, 128));
    expect(Math.abs(area - polygonArea(points)) / polygonArea(points)).toBeLessThan(0.03);
  });
});

describe("tracing masks back to polygons", () => {
  it("traces a rasterized star back within tolerance (IoU > 0.95)", () => {
    const original = rasterize([{ type: "polygon", points: star(60, 50, 40, 18), defect_class: 1 }], 128, 100);
    const polygons = traceMask(original);
    expect(polygons).toHaveLength(1);
    const traced = rasterize(polygons.map((points) => ({ type: "polygon" as const, points, defect_class: 1 })), 128, 100);
    expect(iou(original, traced)).toBeGreaterThan(0.95);
  });

  it("finds each separate region", () => {
    const mask = emptyMask(40, 20);
    fillRings(mask, [[[2, 2], [10, 2], [10, 10], [2, 10]]]);
    fillRings(mask, [[[20, 5], [35, 5], [35, 15], [20, 15]]]);
    expect(traceMask(mask)).toHaveLength(2);
  });

  it("simplification keeps corners and drops collinear points", () => {
    const ring: Point[] = [[0, 0], [5, 0.1], [10, 0], [10, 10], [0, 10]];
    expect(simplify(ring, 0.5)).toEqual([[0, 0], [10, 0], [10, 10], [0, 10]]);
  });
});

describe("the brush", () => {
  it("a fast stroke leaves no gaps and the eraser removes what it covers", () => {
    const mask = emptyMask(100, 20);
    paintStroke(mask, [5, 10], [95, 10], 3, 1);
    for (let x = 5; x < 95; x++) expect(mask.data[10 * 100 + x]).toBe(1);
    paintStroke(mask, [40, 10], [60, 10], 5, 0);
    expect(mask.data[10 * 100 + 50]).toBe(0);
    expect(mask.data[10 * 100 + 20]).toBe(1);
  });
});
