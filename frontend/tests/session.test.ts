import { describe, expect, it } from "vitest";
import { Session, sectionsFor } from "../src/session";
import { applyProgress, describeComparison, int8Offer, progressText, type ModelVersion } from "../src/pages/training";

function memoryStorage() {
  const values = new Map<string, string>();
  return { getItem: (k: string) => values.get(k) ?? null, setItem: (k: string, v: string) => void values.set(k, v) };
}

describe("navigation by role", () => {
  it("shows each role only its pages", () => {
    expect(sectionsFor("annotator").map((s) => s.path)).toEqual(["annotate"]);
    expect(sectionsFor("reviewer").map((s) => s.path)).toEqual(["review", "annotate"]);
    expect(sectionsFor("manager").map((s) => s.path)).toEqual(["review", "annotate", "dashboard", "training", "settings"]);
    expect(sectionsFor("admin").map((s) => s.path)).toEqual(["review", "annotate", "dashboard", "training", "settings"]);
  });

  it("the project switcher remembers the project and the role follows it", () => {
    const me = {
      id: 1,
      username: "ana",
      projects: [
        { id: 4, name: "Tiles", role: "reviewer" as const },
        { id: 9, name: "Gears", role: "manager" as const },
      ],
    };
    const storage = memoryStorage();
    const session = new Session(me, storage);
    expect(session.projectId).toBe(4);
    expect(session.may("dashboard")).toBe(false);
    session.projectId = 9;
    expect(new Session(me, storage).role).toBe("manager");
    expect(new Session(me, storage).may("dashboard")).toBe(true);
  });

  it("a remembered project the user lost falls back to one they have", () => {
    const storage = memoryStorage();
    storage.setItem("loupe.project", "77");
    expect(new Session({ id: 1, username: "x", projects: [{ id: 4, name: "T", role: "reviewer" }] }, storage).projectId).toBe(4);
  });
});

describe("live training progress", () => {
  it("merges a progress event into its version", () => {
    const version: ModelVersion = {
      id: 3, project: 1, kind: "classifier", status: "training", author: "m", training_images: 10,
      hyperparameters: {}, metrics: {}, progress: {}, error: "", created_at: "", finished_at: null, deployed_at: null,
      artifacts: {}, precision: "fp32", comparison: {},
    };
    const next = applyProgress(version, {
      version: 3, status: "training", epoch: 2, epochs: 5, loss: 0.4, metric: 0.8, metric_name: "val_accuracy",
      history: [{ epoch: 1, epochs: 5, loss: 0.7, metric: 0.6 }, { epoch: 2, epochs: 5, loss: 0.4, metric: 0.8 }],
    });
    expect(next.progress.epoch).toBe(2);
    expect(next.progress.history).toHaveLength(2);
    expect(applyProgress(next, { version: 3, status: "ready" }).status).toBe("ready");
  });
});

describe("serving the INT8 model", () => {
  const base: ModelVersion = {
    id: 5, project: 1, kind: "classifier", status: "ready", author: "m", training_images: 10,
    hyperparameters: {}, metrics: {}, progress: {}, error: "", created_at: "", finished_at: null, deployed_at: null,
    artifacts: { "model.onnx": "a" }, precision: "fp32", comparison: {},
  };

  it("is offered only when the version has an INT8 model, with its measured accuracy cost", () => {
    expect(int8Offer(base)).toBeNull();
    const quantized = { ...base, artifacts: { ...base.artifacts, "model.int8.onnx": "b" }, metrics: { int8_accuracy_drop: 0.0125 } };
    expect(int8Offer(quantized)).toContain("1.3 points of validation accuracy");
    expect(int8Offer({ ...quantized, metrics: {} })).toContain("not measured");
  });
});

describe("training progress text", () => {
  const version: ModelVersion = {
    id: 6, project: 1, kind: "classifier", status: "training", author: "m", training_images: 10,
    hyperparameters: {}, metrics: {}, progress: {}, error: "", created_at: "", finished_at: null, deployed_at: null,
    artifacts: {}, precision: "fp32", comparison: {},
  };

  it("says features are being extracted before the first epoch, then counts epochs", () => {
    expect(progressText(version)).toBe("starting…");
    const extracting = { ...version, progress: { epoch: 2, epochs: 4, loss: 0, metric: null, metric_name: "feature_views" } };
    expect(progressText(extracting)).toBe("extracting features 2/4");
    const flow = { ...version, progress: { epoch: 300, epochs: 3345, loss: -0.61, metric: null, metric_name: "flow_steps" } };
    expect(progressText(flow)).toBe("fitting the flow: step 300/3345, loss -0.6100");
    const training = { ...version, progress: { epoch: 3, epochs: 60, loss: 0.25, metric: 0.9, metric_name: "val_accuracy" } };
    expect(progressText(training)).toBe("epoch 3/60, loss 0.2500, val_accuracy 0.900");
  });
});

describe("the comparison with the models serving", () => {
  const figures = (review: number) => ({ review_rate: review, escape_rate: 0.004, t_pass: 0.2, auroc: 0.99 });

  it("says which costs people less at the project's escape target, on how many parts", () => {
    const text = describeComparison({
      status: "done", verdict: "worse", parts: 480, target_escape_rate: 0.005,
      candidate_figures: figures(0.31), serving_figures: figures(0.12), serving: "classifier:3",
    });
    expect(text).toBe("Worse than the models serving: on the same 480 audited parts, 31 % of parts to people against 12 %, at 0.5 % escape.");
    expect(describeComparison({ status: "done", verdict: "better", parts: 9, target_escape_rate: 0.005, candidate_figures: figures(0.05), serving_figures: figures(0.1) })).toContain("Better than");
    expect(describeComparison({ status: "done", verdict: "same", parts: 600, target_escape_rate: 0.02, candidate_figures: figures(0.13), serving_figures: figures(0.12) })).toBe(
      "No better or worse than the models serving, as far as these parts can tell: on the same 600 audited parts, 13 % of parts to people against 12 %, at 2 % escape.",
    );
  });

  it("shows progress, failures, a first model and too few parts", () => {
    expect(describeComparison({ status: "running", done: 100, total: 400 })).toContain("100 of 400 images scored");
    expect(describeComparison({ status: "failed", error: "boom" })).toContain("boom");
    expect(describeComparison({ status: "done", verdict: "first", parts: 50, target_escape_rate: 0.005, candidate_figures: figures(0.2), serving_figures: null })).toContain("Nothing serves yet");
    expect(describeComparison({ status: "done", verdict: "too_few_parts", parts: 3, candidate_figures: figures(1), serving_figures: figures(1) })).toContain("Not enough audited parts");
    expect(describeComparison({})).toBeNull();
  });
});
