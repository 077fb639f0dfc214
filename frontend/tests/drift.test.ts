import { describe, expect, it } from "vitest";
import { describeHold, describeStation, histogramOption, mostMoved, type DriftSignal, type DriftStation } from "../src/dashboard/drift";

function signal(name: string, psi: number, level: DriftSignal["level"] = "stable"): DriftSignal {
  return {
    signal: name,
    label: name.replace("_", " "),
    source: name === "defect_score" || name === "anomaly_ratio" ? "models" : "camera",
    level,
    psi,
    ks: 0.1,
    p_value: 0.5,
    reference_parts: 500,
    current_parts: 480,
    reference_mean: 120,
    current_mean: 60,
    histogram: { edges: [0, 10, 20], reference: [0.25, 0.75], current: [1, 0] },
  };
}

function station(level: DriftStation["level"], signals: DriftSignal[]): DriftStation {
  return {
    station: 1,
    line: "Line 1",
    name: "Top camera",
    level,
    models_level: level === "too_few_parts" ? level : "stable",
    baseline_at: null,
    held_since: null,
    drift_calibration: null,
    drift_parts_needed: null,
    reference: { parts: 500, from: null, to: null },
    current: { parts: 480, from: null, to: null },
    signals,
  };
}

describe("a station's drift in words", () => {
  it("names the signal that moved most, with both means and its PSI", () => {
    const text = describeStation(station("drift", [signal("contrast", 0.12, "watch"), signal("brightness", 1.9, "drift")]), 200);
    expect(text).toBe(
      "Line 1 / Top camera: drift; most moved: brightness, 120.0 → 60.0 (PSI 1.90). The models' outputs have not moved: a camera change they do not mind so far.",
    );
  });

  it("says when the models' own outputs moved too, and says nothing of them while stable", () => {
    const moved = { ...station("drift", [signal("anomaly_ratio", 0.8, "drift")]), models_level: "drift" as const };
    expect(describeStation(moved, 200)).toMatch(/The models' outputs moved too \(drift\)\.$/);
    expect(describeStation(station("stable", [signal("brightness", 0.01)]), 200)).not.toMatch(/models/);
  });

  it("says how many parts are still missing before it is judged", () => {
    const text = describeStation({ ...station("too_few_parts", []), current: { parts: 12, from: null, to: null } }, 200);
    expect(text).toMatch(/not enough parts yet \(500 reference, 12 latest; 200 of each needed\)/);
  });
});

describe("the drawn histograms", () => {
  it("draw the signal with the largest PSI", () => {
    expect(mostMoved(station("watch", [signal("a", 0.1), signal("b", 0.3), signal("c", 0.2)]))?.signal).toBe("b");
    expect(mostMoved(station("too_few_parts", []))).toBeUndefined();
  });

  it("put both windows' shares over the bins' centres", () => {
    const option = histogramOption(signal("brightness", 1)) as {
      xAxis: { data: string[] };
      series: { name: string; data: number[] }[];
    };
    expect(option.xAxis.data).toEqual(["5.0", "15.0"]);
    expect(option.series.map((s) => s.name)).toEqual(["first 500 parts", "latest 480"]);
    expect(option.series[1]?.data).toEqual([1, 0]);
  });
});

describe("a held station in words", () => {
  const fitted = { id: 1, parts: 480, t_pass: 0.2, t_fail: 0.9, expected_review_rate: 0.183, escape_rate: 0.002, created_at: "2026-12-04T00:00:00Z" };

  it("says nothing of a station drift review does not hold", () => {
    expect(describeHold(station("drift", []))).toBeNull();
  });

  it("says its parts go to people until enough are decided, and how many are", () => {
    const held = { ...station("drift", []), held_since: "2026-12-04T00:00:00Z", drift_parts_needed: 460 };
    expect(describeHold(held)).toMatch(/^Its parts go to people until the drift ends.*\(0 of at least 460 decided so far\)/);
    const tooFew = { ...held, drift_calibration: { ...fitted, parts: 40, t_pass: -1, t_fail: 2 } };
    expect(describeHold(tooFew)).toMatch(/\(40 of at least 460 decided so far\)/);
  });

  it("says the models decide again, on how many parts, and what share still goes to people", () => {
    const held = { ...station("drift", []), held_since: "2026-12-04T00:00:00Z", drift_calibration: fitted };
    expect(describeHold(held)).toBe(
      "Decided by the models again on thresholds fitted to the 480 parts people decided since the drift began; about 18 % still go to people.",
    );
  });
});
