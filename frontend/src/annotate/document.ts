// The label being edited: what the API stores, with masks decoded for painting.

import type { BoxShape, Mask, PolygonShape, Shape } from "./geometry";
import { decodeRle, encodeRle } from "./geometry";

export interface MaskLayer {
  type: "mask";
  mask: Mask;
  defect_class: number;
}

export type EditorShape = BoxShape | PolygonShape | MaskLayer;

export interface LabelDoc {
  outcome: "pass" | "fail";
  defect_class: number | null;
  shapes: EditorShape[];
}

export interface StoredLabel {
  id: number;
  version: number;
  outcome: "pass" | "fail";
  defect_class: number | null;
  shapes: Shape[];
  submitted: boolean;
  updated_at: string;
}

export const EMPTY_DOC: LabelDoc = { outcome: "pass", defect_class: null, shapes: [] };

export function fromStored(label: Pick<StoredLabel, "outcome" | "defect_class" | "shapes"> | null): LabelDoc {
  if (!label) return EMPTY_DOC;
  return {
    outcome: label.outcome,
    defect_class: label.defect_class,
    shapes: label.shapes.map((shape): EditorShape =>
      shape.type === "mask" ? { type: "mask", mask: decodeRle(shape.rle), defect_class: shape.defect_class } : shape,
    ),
  };
}

/** The API body for a document: a part with any defect shape, or a chosen class, fails. */
export function toBody(doc: LabelDoc): { outcome: "pass" | "fail"; defect_class: number | null; shapes: Shape[] } {
  const shapes = doc.shapes
    .filter((shape) => shape.type !== "mask" || shape.mask.data.some((v) => v))
    .map((shape): Shape => (shape.type === "mask" ? { type: "mask", rle: encodeRle(shape.mask), defect_class: shape.defect_class } : shape));
  const defectClass = doc.defect_class ?? shapes[0]?.defect_class ?? null;
  return { outcome: defectClass !== null ? "fail" : "pass", defect_class: defectClass, shapes };
}

/** Both sets of shapes, for merging a stale save with what is on the server. */
export function merge(mine: LabelDoc, theirs: LabelDoc): LabelDoc {
  const seen = new Set(theirs.shapes.map((s) => JSON.stringify(s.type === "mask" ? [s.type, s.defect_class] : s)));
  const extra = mine.shapes.filter((s) => !seen.has(JSON.stringify(s.type === "mask" ? [s.type, s.defect_class] : s)));
  return { outcome: mine.outcome, defect_class: mine.defect_class ?? theirs.defect_class, shapes: [...theirs.shapes, ...extra] };
}
