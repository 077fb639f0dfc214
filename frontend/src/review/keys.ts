// Keyboard first: every action of the console has a key. Pure mapping, unit-tested.

import type { DefectClass } from "../api";

export type Command =
  | { kind: "pass" }
  | { kind: "fail"; defectClass: number }
  | { kind: "next" }
  | { kind: "undo" }
  | { kind: "release" }
  | { kind: "overlay"; overlay: "heatmap" | "mask" }
  | { kind: "zoom"; factor: number }
  | { kind: "reset-view" }
  | { kind: "view"; step: 1 | -1 }
  | { kind: "help" };

export interface KeyLike {
  key: string;
  ctrlKey?: boolean;
  metaKey?: boolean;
  altKey?: boolean;
}

export const KEY_HELP: [string, string][] = [
  ["P", "pass"],
  ["1–9", "fail with that defect class"],
  ["N / Enter", "next part"],
  ["U / Ctrl+Z", "undo the last decision (grace period)"],
  ["R", "release the part back to the queue"],
  ["H", "toggle heatmap"],
  ["M", "toggle mask"],
  ["+ / −", "zoom"],
  ["0", "reset zoom"],
  ["[ / ]", "previous / next camera view"],
  ["?", "show keys"],
];

export function commandFor(event: KeyLike, classes: DefectClass[]): Command | null {
  if (event.altKey) return null;
  const key = event.key;
  if ((event.ctrlKey || event.metaKey) && key.toLowerCase() === "z") return { kind: "undo" };
  if (event.ctrlKey || event.metaKey) return null;
  if (/^[1-9]$/.test(key)) {
    const hotkey = Number(key);
    const match = classes.find((dc) => dc.hotkey === hotkey);
    return match ? { kind: "fail", defectClass: match.id } : null;
  }
  switch (key) {
    case "p":
    case "P":
      return { kind: "pass" };
    case "n":
    case "N":
    case "Enter":
      return { kind: "next" };
    case "u":
    case "U":
      return { kind: "undo" };
    case "r":
    case "R":
      return { kind: "release" };
    case "h":
    case "H":
      return { kind: "overlay", overlay: "heatmap" };
    case "m":
    case "M":
      return { kind: "overlay", overlay: "mask" };
    case "+":
    case "=":
      return { kind: "zoom", factor: 1.25 };
    case "-":
      return { kind: "zoom", factor: 0.8 };
    case "0":
      return { kind: "reset-view" };
    case "]":
      return { kind: "view", step: 1 };
    case "[":
      return { kind: "view", step: -1 };
    case "?":
      return { kind: "help" };
    default:
      return null;
  }
}
