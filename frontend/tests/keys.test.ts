import { describe, expect, it } from "vitest";
import type { DefectClass } from "../src/api";
import { commandFor } from "../src/review/keys";

const classes: DefectClass[] = [
  { id: 11, name: "crack", hotkey: 1 },
  { id: 12, name: "blowhole", hotkey: 2 },
  { id: 13, name: "fray", hotkey: null },
];

describe("review console keys", () => {
  it("passes with P and fails with the digit of a defect class", () => {
    expect(commandFor({ key: "p" }, classes)).toEqual({ kind: "pass" });
    expect(commandFor({ key: "1" }, classes)).toEqual({ kind: "fail", defectClass: 11 });
    expect(commandFor({ key: "2" }, classes)).toEqual({ kind: "fail", defectClass: 12 });
  });

  it("ignores a digit no class has", () => {
    expect(commandFor({ key: "3" }, classes)).toBeNull();
  });

  it("has next, undo, release, overlays and zoom", () => {
    expect(commandFor({ key: "n" }, classes)).toEqual({ kind: "next" });
    expect(commandFor({ key: "Enter" }, classes)).toEqual({ kind: "next" });
    expect(commandFor({ key: "u" }, classes)).toEqual({ kind: "undo" });
    expect(commandFor({ key: "z", ctrlKey: true }, classes)).toEqual({ kind: "undo" });
    expect(commandFor({ key: "r" }, classes)).toEqual({ kind: "release" });
    expect(commandFor({ key: "h" }, classes)).toEqual({ kind: "overlay", overlay: "heatmap" });
    expect(commandFor({ key: "m" }, classes)).toEqual({ kind: "overlay", overlay: "mask" });
    expect(commandFor({ key: "+" }, classes)).toEqual({ kind: "zoom", factor: 1.25 });
    expect(commandFor({ key: "0" }, classes)).toEqual({ kind: "reset-view" });
    expect(commandFor({ key: "]" }, classes)).toEqual({ kind: "view", step: 1 });
    expect(commandFor({ key: "[" }, classes)).toEqual({ kind: "view", step: -1 });
  });

  it("leaves browser shortcuts alone", () => {
    expect(commandFor({ key: "p", ctrlKey: true }, classes)).toBeNull();
    expect(commandFor({ key: "r", metaKey: true }, classes)).toBeNull();
    expect(commandFor({ key: "1", altKey: true }, classes)).toBeNull();
  });
});
