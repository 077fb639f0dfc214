import { describe, expect, it } from "vitest";
import { EMPTY_DOC, fromStored, merge, toBody } from "../src/annotate/document";
import { emptyMask } from "../src/annotate/geometry";

describe("the label document", () => {
  it("a label with shapes fails with the first shape's class; an empty one passes", () => {
    expect(toBody(EMPTY_DOC)).toEqual({ outcome: "pass", defect_class: null, shapes: [] });
    const box = { type: "box" as const, x: 1, y: 2, width: 3, height: 4, defect_class: 7 };
    expect(toBody({ outcome: "pass", defect_class: null, shapes: [box] })).toEqual({ outcome: "fail", defect_class: 7, shapes: [box] });
  });

  it("masks travel as RLE and empty masks are dropped", () => {
    const painted = emptyMask(4, 3);
    painted.data[5] = 1;
    const body = toBody({
      outcome: "fail",
      defect_class: 2,
      shapes: [
        { type: "mask", mask: painted, defect_class: 2 },
        { type: "mask", mask: emptyMask(4, 3), defect_class: 3 },
      ],
    });
    expect(body.shapes).toEqual([{ type: "mask", rle: { size: [3, 4], counts: [4, 1, 7] }, defect_class: 2 }]);
    const back = fromStored({ outcome: "fail", defect_class: 2, shapes: body.shapes });
    expect(back.shapes[0]!.type === "mask" && Array.from(back.shapes[0]!.mask.data)).toEqual(Array.from(painted.data));
  });

  it("merging a stale save keeps both people's shapes once", () => {
    const a = { type: "box" as const, x: 1, y: 1, width: 2, height: 2, defect_class: 1 };
    const b = { type: "box" as const, x: 5, y: 5, width: 2, height: 2, defect_class: 1 };
    const theirs = { outcome: "fail" as const, defect_class: 1, shapes: [a] };
    const mine = { outcome: "fail" as const, defect_class: null, shapes: [{ ...a }, b] };
    expect(merge(mine, theirs).shapes).toEqual([a, b]);
    expect(merge(mine, theirs).defect_class).toBe(1);
  });
});
