import { describe, expect, it } from "vitest";
import { History } from "../src/annotate/history";
import { fit, levelFor, toImage, toScreen, visibleTiles, zoomAt } from "../src/annotate/viewport";

describe("undo and redo", () => {
  it("walks back and forth and a new edit drops the redo branch", () => {
    const history = new History<string>("a");
    history.push("b");
    history.push("c");
    expect(history.undo()).toBe("b");
    expect(history.undo()).toBe("a");
    expect(history.undo()).toBeNull();
    expect(history.redo()).toBe("b");
    history.push("d");
    expect(history.canRedo).toBe(false);
    expect(history.current).toBe("d");
  });

  it("keeps a bounded past", () => {
    const history = new History<number>(0, 3);
    for (let i = 1; i <= 10; i++) history.push(i);
    expect([history.undo(), history.undo(), history.undo(), history.undo()]).toEqual([9, 8, 7, null]);
  });
});

describe("viewport and image pyramid", () => {
  const pyramid = { width: 5472, height: 3648, tile_size: 512, levels: 5 };

  it("fits a 20-megapixel image on a 1366x768 screen and maps points both ways", () => {
    const view = fit(pyramid.width, pyramid.height, 1366, 768);
    expect(view.scale).toBeCloseTo(768 / 3648);
    const [ix, iy] = toImage(view, 683, 384);
    expect(ix).toBeCloseTo(2736);
    expect(iy).toBeCloseTo(1824);
    expect(toScreen(view, ix, iy)).toEqual([683, 384]);
  });

  it("zooming keeps the point under the cursor fixed", () => {
    const view = fit(pyramid.width, pyramid.height, 1366, 768);
    const before = toImage(view, 300, 200);
    const after = toImage(zoomAt(view, 3, 300, 200), 300, 200);
    expect(after[0]).toBeCloseTo(before[0]);
    expect(after[1]).toBeCloseTo(before[1]);
  });

  it("draws a fitted view from a handful of coarse tiles and a zoomed one from full-resolution tiles", () => {
    const fitted = fit(pyramid.width, pyramid.height, 1366, 768);
    expect(levelFor(pyramid, fitted.scale)).toBe(2);
    expect(visibleTiles(pyramid, fitted, 1366, 768).length).toBeLessThanOrEqual(6);
    const zoomed = { scale: 1, x: -2000, y: -1000 };
    const tiles = visibleTiles(pyramid, zoomed, 1366, 768);
    expect(tiles.every((t) => t.level === 0)).toBe(true);
    expect(tiles.length).toBeLessThanOrEqual(12);
  });
});
