import { describe, expect, it } from "vitest";
import { describeModelsView, describeRegion, regionFromDrag, regionFromPercent, regionPercent } from "../src/settings/region";

describe("a region drawn by dragging", () => {
  it("is the rectangle between the two points, whichever way the drag went", () => {
    expect(regionFromDrag({ x: 0.8, y: 0.9 }, { x: 0.2, y: 0.1 })).toEqual({ x: 0.2, y: 0.1, width: 0.6, height: 0.8 });
  });

  it("is pulled back to the image's edge when the pointer left the image", () => {
    expect(regionFromDrag({ x: -0.3, y: 0.5 }, { x: 1.4, y: 1.2 })).toEqual({ x: 0, y: 0.5, width: 1, height: 0.5 });
  });

  it("is no region for a click or a sliver", () => {
    expect(regionFromDrag({ x: 0.5, y: 0.5 }, { x: 0.5, y: 0.5 })).toBeNull();
    expect(regionFromDrag({ x: 0.1, y: 0.1 }, { x: 0.9, y: 0.11 })).toBeNull();
  });
});

describe("a region typed in per cent", () => {
  it("becomes fractions of the image", () => {
    expect(regionFromPercent({ x: "10", y: "0", width: "50", height: "100" })).toEqual({ x: 0.1, y: 0, width: 0.5, height: 1 });
  });

  it.each([
    [{ x: "", y: "0", width: "50", height: "50" }, "x must be a number"],
    [{ x: "abc", y: "0", width: "50", height: "50" }, "x must be a number"],
    [{ x: "60", y: "0", width: "50", height: "50" }, "inside the image"],
    [{ x: "-1", y: "0", width: "50", height: "50" }, "at least 0 %"],
    [{ x: "0", y: "0", width: "1", height: "50" }, "at least 2 %"],
  ])("is refused with the reason when it is not a rectangle inside the image (%o)", (values, reason) => {
    expect(regionFromPercent(values)).toContain(reason);
  });

  it("round-trips through the number fields", () => {
    const region = { x: 0.125, y: 0.25, width: 0.5, height: 0.75 };
    expect(regionFromPercent(regionPercent(region))).toEqual(region);
    expect(regionPercent(null)).toEqual({ x: "0", y: "0", width: "100", height: "100" });
  });

  it("is described in words", () => {
    expect(describeRegion(null)).toBe("the whole frame");
    expect(describeRegion({ x: 0.1, y: 0.2, width: 0.5, height: 0.25 })).toBe("the box from 10 % to 60 % across and 20 % to 45 % down");
  });
});

describe("what the settings say about the models and a station's view", () => {
  const calibration = {
    id: 1, parts: 640, t_pass: 0.2, t_fail: 0.9, expected_review_rate: 0.123, escape_rate: 0, created_at: "",
  };

  it("says nothing before any models are deployed", () => {
    expect(describeModelsView({ learnt: null, calibration: null })).toBe("");
    expect(describeModelsView(undefined)).toBe("");
  });

  it("says the models learnt the view", () => {
    expect(describeModelsView({ learnt: true, calibration: null })).toMatch(/trained on this view/);
  });

  it("says parts go to people until the new view is calibrated", () => {
    expect(describeModelsView({ learnt: false, calibration: null })).toMatch(/go to people until/);
  });

  it("says a calibration too small for the escape target still sends parts to people", () => {
    const small = { ...calibration, parts: 1, t_pass: -1, t_fail: 2 };
    expect(describeModelsView({ learnt: false, calibration: small })).toMatch(/^Calibrated on 1 decided part seen.*not enough/);
    expect(describeModelsView({ learnt: false, calibration: small, parts_needed: 460 })).toMatch(
      /^Calibrated on 1 decided part \(of at least 460\) seen through this view: not enough/,
    );
  });

  it("says the models decide again, with the share that goes to people", () => {
    const text = describeModelsView({ learnt: false, calibration });
    expect(text).toMatch(/calibrated on 640 decided parts/);
    expect(text).toMatch(/about 12\.3 % to people/);
  });
});
