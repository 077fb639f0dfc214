// A station's inspection region: the rectangle of the camera's frame the models look at, in
// fractions of the image (x, y, width, height), as the server stores it. Pure functions, so
// the drawing and the number fields agree and vitest can check them without a browser.

export interface Region {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** The server refuses a region narrower or shorter than this share of the frame. */
export const MIN_REGION = 0.02;

const clamp = (value: number, low: number, high: number) => Math.min(high, Math.max(low, value));
const round = (value: number) => Math.round(value * 10000) / 10000;

/** The region a drag from one point to another draws, both as fractions of the shown image
 * (any direction; points outside the image are pulled back to its edge). Null for a drag too
 * small to be meant as a region (a click). */
export function regionFromDrag(from: { x: number; y: number }, to: { x: number; y: number }): Region | null {
  const x0 = clamp(Math.min(from.x, to.x), 0, 1);
  const y0 = clamp(Math.min(from.y, to.y), 0, 1);
  const x1 = clamp(Math.max(from.x, to.x), 0, 1);
  const y1 = clamp(Math.max(from.y, to.y), 0, 1);
  if (x1 - x0 < MIN_REGION || y1 - y0 < MIN_REGION) return null;
  return { x: round(x0), y: round(y0), width: round(x1 - x0), height: round(y1 - y0) };
}

/** A region from four percentages typed by a person, or the reason it is not one. */
export function regionFromPercent(values: { x: string; y: string; width: string; height: string }): Region | string {
  const parsed: Region = { x: 0, y: 0, width: 0, height: 0 };
  for (const key of ["x", "y", "width", "height"] as const) {
    const text = values[key].trim();
    const value = Number(text);
    if (text === "" || !Number.isFinite(value)) return `${key} must be a number of per cent`;
    parsed[key] = value / 100;
  }
  const { x, y, width, height } = parsed;
  if (x < 0 || y < 0 || x >= 1 || y >= 1) return "x and y must be at least 0 % and below 100 %";
  if (width < MIN_REGION || height < MIN_REGION) return `width and height must each be at least ${MIN_REGION * 100} %`;
  if (x + width > 1 + 1e-9 || y + height > 1 + 1e-9) return "the region must lie inside the image (x + width and y + height at most 100 %)";
  return { x: round(x), y: round(y), width: round(Math.min(width, 1 - x)), height: round(Math.min(height, 1 - y)) };
}

/** The region as per cent strings for the number fields (the whole frame when there is none). */
export function regionPercent(region: Region | null): { x: string; y: string; width: string; height: string } {
  const r = region ?? { x: 0, y: 0, width: 1, height: 1 };
  const pct = (value: number) => String(Math.round(value * 10000) / 100);
  return { x: pct(r.x), y: pct(r.y), width: pct(r.width), height: pct(r.height) };
}

/** For people: "the whole frame" or "the box from 10 % to 60 % across and 20 % to 90 % down". */
export function describeRegion(region: Region | null): string {
  if (region === null) return "the whole frame";
  const pct = (value: number) => Math.round(value * 10000) / 100;
  const across = `${pct(region.x)} % to ${pct(region.x + region.width)} % across`;
  return `the box from ${across} and ${pct(region.y)} % to ${pct(region.y + region.height)} % down`;
}

/** How the deployed models see a station now (``models_view`` of the station API). */
export interface ModelsView {
  learnt: boolean | null;
  calibration: {
    id: number;
    parts: number;
    t_pass: number;
    t_fail: number;
    expected_review_rate: number;
    escape_rate: number;
    created_at: string;
  } | null;
  /** Decided parts the view's fit needs before it can pass any (null while the view is learnt). */
  parts_needed?: number | null;
}

/** One sentence for people: whether the models decide this station's parts through its view,
 * and why not when they do not. Empty when no models are deployed. */
export function describeModelsView(view: ModelsView | undefined): string {
  if (!view || view.learnt === null) return "";
  if (view.learnt) return "The deployed models were trained on this view.";
  const calibration = view.calibration;
  if (!calibration) {
    return (
      "The deployed models were not trained on this view: its parts go to people until the models are " +
      "calibrated on the station's decided parts through it (queued) or retrained."
    );
  }
  const parts = `${calibration.parts} decided part${calibration.parts === 1 ? "" : "s"}`;
  if (calibration.t_pass < 0 && calibration.t_fail > 1) {
    return (
      `Calibrated on ${parts}${view.parts_needed ? ` (of at least ${view.parts_needed})` : ""} seen through this view: ` +
      "not enough to meet the escape target yet, so its " +
      "parts go to people; each part they decide adds to it."
    );
  }
  const share = `${Math.round(calibration.expected_review_rate * 1000) / 10} %`;
  return (
    `Not trained on this view, but calibrated on ${parts} seen through it: the models decide its parts ` +
    `again, about ${share} to people.`
  );
}
