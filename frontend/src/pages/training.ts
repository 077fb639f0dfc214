// Training view: start a job, watch its loss and metric curves update live, read a model's
// metrics (per-class figures, confusion matrix), deploy or retire a version.

import { api, ApiError, type Page as ApiPage } from "../api";
import { chartIn, type Chart } from "../charts";
import type { Page, PageContext } from "../context";
import { h, percent, replaceChildren } from "../dom";

export interface ExampleError {
  annotation: number;
  truth: string;
  predicted: string;
  p_defect: number;
}

export interface ProgressPoint {
  epoch: number;
  epochs: number;
  loss: number;
  metric: number | null;
}

export interface ModelVersion {
  id: number;
  project: number;
  kind: "classifier" | "anomaly" | "segmenter";
  status: string;
  author: string | null;
  training_images: number;
  hyperparameters: Record<string, unknown>;
  metrics: Record<string, unknown>;
  progress: { epoch?: number; epochs?: number; loss?: number; metric?: number | null; metric_name?: string; history?: ProgressPoint[] };
  error: string;
  created_at: string;
  finished_at: string | null;
  deployed_at: string | null;
  artifacts: Record<string, string>;
  /** What the inference workers serve once deployed. */
  precision: "fp32" | "int8";
  /** Against the models serving, on the same audited parts (inspection.services.model_compare). */
  comparison: Comparison | Record<string, never>;
}

export interface ComparisonFigures {
  review_rate: number;
  escape_rate: number;
  t_pass: number;
  auroc: number | null;
}

export interface Comparison {
  status: "running" | "done" | "failed";
  done?: number;
  total?: number;
  error?: string;
  verdict?: "better" | "worse" | "same" | "too_few_parts" | "first";
  parts?: number;
  serving?: string | null;
  target_escape_rate?: number;
  candidate_figures?: ComparisonFigures;
  serving_figures?: ComparisonFigures | null;
}

function share(value: number): string {
  return `${Math.round(value * 1000) / 10} %`;
}

/** What the comparison with the serving models says, in words (null: none made). */
export function describeComparison(comparison: ModelVersion["comparison"]): string | null {
  if (!comparison || !("status" in comparison)) return null;
  if (comparison.status === "running") {
    return comparison.total ? `Comparing with the models serving: ${comparison.done ?? 0} of ${comparison.total} images scored.` : "Comparing with the models serving…";
  }
  if (comparison.status === "failed") return `The comparison failed: ${comparison.error ?? "unknown error"}.`;
  const parts = comparison.parts ?? 0;
  const target = share(comparison.target_escape_rate ?? 0);
  const mine = comparison.candidate_figures;
  const theirs = comparison.serving_figures;
  if (comparison.verdict === "too_few_parts" || !mine) {
    return `Not enough audited parts to tell it from the models serving (${parts} it did not train on); decide more parts, then compare again.`;
  }
  if (comparison.verdict === "first" || !theirs) {
    return `Nothing serves yet: on ${parts} audited parts it would send ${share(mine.review_rate)} to people at ${target} escape.`;
  }
  const figures = `on the same ${parts} audited parts, ${share(mine.review_rate)} of parts to people against ${share(theirs.review_rate)}, at ${target} escape`;
  if (comparison.verdict === "same") return `No better or worse than the models serving, as far as these parts can tell: ${figures}.`;
  return `${comparison.verdict === "better" ? "Better" : "Worse"} than the models serving: ${figures}.`;
}

/** The INT8 deploy button's explanation: what the quantized model costs in accuracy. */
export function int8Offer(version: ModelVersion): string | null {
  if (!("model.int8.onnx" in (version.artifacts ?? {}))) return null;
  const drop = version.metrics["int8_accuracy_drop"];
  const cost = typeof drop === "number" ? `${(drop * 100).toFixed(1)} points of validation accuracy` : "accuracy cost not measured";
  return `Serve the INT8 model: about half the CPU per part; ${cost}.`;
}

/** Merge a live progress event into the version it belongs to. */
export function applyProgress(version: ModelVersion, payload: Record<string, unknown>): ModelVersion {
  const history = Array.isArray(payload.history) ? (payload.history as ProgressPoint[]) : version.progress.history;
  return {
    ...version,
    status: typeof payload.status === "string" ? payload.status : version.status,
    progress: {
      ...version.progress,
      epoch: (payload.epoch as number | undefined) ?? version.progress.epoch,
      epochs: (payload.epochs as number | undefined) ?? version.progress.epochs,
      loss: (payload.loss as number | undefined) ?? version.progress.loss,
      metric: (payload.metric as number | null | undefined) ?? version.progress.metric,
      metric_name: (payload.metric_name as string | undefined) ?? version.progress.metric_name,
      history,
    },
  };
}

export const trainingPage: Page = (context: PageContext) => {
  const versions = new Map<number, ModelVersion>();
  let selected: number | null = null;
  let curve: Chart | null = null;
  let perClass: Chart | null = null;

  const message = h("p", { class: "message", role: "alert", id: "training-message" });
  const table = h("tbody", { id: "versions" });
  const detail = h("section", { class: "version-detail", id: "version-detail", aria: { label: "Model version" } });
  const kind = h(
    "select",
    { id: "train-kind", name: "kind" },
    h("option", { value: "classifier" }, "Classifier"),
    h("option", { value: "anomaly" }, "Anomaly detector"),
    h("option", { value: "segmenter" }, "Segmenter"),
  );
  const epochs = h("input", { id: "train-epochs", type: "number", attrs: { min: "1", max: "200", placeholder: "default" } });
  const size = h("input", { id: "train-size", type: "number", attrs: { min: "32", max: "512", step: "32", placeholder: "default" } });
  // The anomaly detector has neither epochs nor an INT8 copy (its training is one feature pass).
  const int8 = h("input", { id: "train-int8", type: "checkbox" });
  kind.addEventListener("change", () => {
    epochs.disabled = int8.disabled = kind.value === "anomaly";
  });

  const form = h(
    "form",
    {
      class: "train-form",
      on: {
        submit: async (event) => {
          event.preventDefault();
          message.textContent = "";
          const hyperparameters: Record<string, number | number[] | boolean> = {};
          if (int8.checked && kind.value !== "anomaly") hyperparameters.int8 = true;
          if (epochs.value && kind.value !== "anomaly") hyperparameters.epochs = Number(epochs.value);
          if (size.value) hyperparameters.input_size = [Number(size.value), Number(size.value)];
          try {
            const version = await api<ModelVersion>("model-versions", {
              method: "POST",
              body: { project: context.project.id, kind: kind.value, hyperparameters },
            });
            versions.set(version.id, version);
            selected = version.id;
            render();
            context.announce(`Training of model ${version.id} started.`);
          } catch (error) {
            message.textContent = error instanceof ApiError ? error.detail : String(error);
          }
        },
      },
    },
    h("h2", {}, "Start a training job"),
    h("label", { for: "train-kind" }, "Model kind"),
    kind,
    h("label", { for: "train-epochs" }, "Epochs"),
    epochs,
    h("label", { for: "train-size" }, "Image size (px)"),
    size,
    h("label", { for: "train-int8" }, int8, " Also make an INT8 copy (faster; its accuracy cost is shown)"),
    h("button", { type: "submit", id: "train-start" }, "Start training"),
  );

  replaceChildren(
    context.root,
    h(
      "div",
      { class: "training" },
      h("h1", {}, "Training: ", context.project.name),
      form,
      message,
      h(
        "table",
        { class: "versions" },
        h("caption", {}, "Model versions"),
        h(
          "thead",
          {},
          h("tr", {}, ...["Version", "Kind", "Status", "Progress", "Headline", "Actions"].map((c) => h("th", { attrs: { scope: "col" } }, c))),
        ),
        table,
      ),
      detail,
    ),
  );

  async function act(version: ModelVersion, action: "deploy" | "retire" | "cancel" | "compare", precision?: "int8", force = false): Promise<void> {
    replaceChildren(message);
    try {
      const body = { ...(precision ? { precision } : {}), ...(force ? { force } : {}) };
      const updated = await api<ModelVersion>(`model-versions/${version.id}/${action}`, {
        method: "POST",
        ...(Object.keys(body).length ? { body } : {}),
      });
      versions.set(updated.id, updated);
      await load();
      context.announce(`Model ${version.id}: ${action} ${action === "compare" ? "queued" : "done"}.`);
    } catch (error) {
      message.textContent = error instanceof ApiError ? error.detail : String(error);
      if (error instanceof ApiError && error.code === "worse_than_serving") {
        // Refused as worse than what serves: the manager may still insist (audited).
        message.append(
          " ",
          h("button", { type: "button", id: "deploy-anyway", on: { click: () => void act(version, "deploy", precision, true) } }, "Deploy anyway"),
        );
      }
    }
  }

  function render(): void {
    const rows = [...versions.values()].sort((a, b) => b.id - a.id);
    replaceChildren(
      table,
      ...rows.map((v) =>
        h(
          "tr",
          { data: { version: String(v.id), status: v.status }, class: v.id === selected ? "selected" : "" },
          h("td", {}, h("button", { type: "button", class: "link", on: { click: () => select(v.id) } }, `#${v.id}`)),
          h("td", {}, v.kind),
          h("td", { class: `status status-${v.status}` }, v.status === "deployed" && v.precision === "int8" ? "deployed (INT8)" : v.status),
          h("td", { class: "progress-cell" }, progressText(v)),
          h("td", {}, headline(v)),
          h(
            "td",
            {},
            v.status === "ready" || v.status === "retired"
              ? h("button", { type: "button", data: { action: "deploy" }, on: { click: () => void act(v, "deploy") } }, "Deploy")
              : null,
            (v.status === "ready" || v.status === "retired") && int8Offer(v)
              ? h(
                  "button",
                  { type: "button", title: int8Offer(v) ?? "", data: { action: "deploy-int8" }, on: { click: () => void act(v, "deploy", "int8") } },
                  "Deploy INT8",
                )
              : null,
            (v.status === "ready" || v.status === "retired") && v.kind !== "segmenter"
              ? h(
                  "button",
                  { type: "button", data: { action: "compare" }, title: "Score it beside the models serving on the latest audited parts", on: { click: () => void act(v, "compare") } },
                  "Compare",
                )
              : null,
            v.status === "deployed" || v.status === "ready"
              ? h("button", { type: "button", data: { action: "retire" }, on: { click: () => void act(v, "retire") } }, "Retire")
              : null,
            v.status === "training"
              ? h("button", { type: "button", data: { action: "cancel" }, on: { click: () => void act(v, "cancel") } }, "Cancel")
              : null,
          ),
        ),
      ),
    );
    renderDetail();
  }

  function select(id: number): void {
    selected = id;
    render();
  }

  function renderDetail(): void {
    const version = selected === null ? undefined : versions.get(selected);
    curve?.dispose();
    perClass?.dispose();
    curve = perClass = null;
    if (!version) {
      replaceChildren(detail);
      return;
    }
    const curveBox = h("div", { class: "chart", id: "training-curve", role: "img", aria: { label: "Loss and validation metric per epoch" } });
    const classBox = h("div", { class: "chart small", id: "per-class", role: "img", aria: { label: "Per-class F1" } });
    const metrics = version.metrics ?? {};
    const scalar = Object.entries(metrics).filter(([, value]) => typeof value === "number") as [string, number][];
    const f1 = (metrics.f1 ?? null) as Record<string, number> | null;
    const confusion = (metrics.confusion ?? null) as { labels: string[]; matrix: number[][] } | null;
    const errors = (Array.isArray(metrics.example_errors) ? metrics.example_errors : []) as ExampleError[];
    // What the trainer warns about the data it was given (too few good parts, ...).
    const warnings = (Array.isArray(metrics.data_warnings) ? metrics.data_warnings : []).filter(
      (warning): warning is string => typeof warning === "string",
    );
    replaceChildren(
      detail,
      h("h2", {}, `Model #${version.id}: ${version.kind}, ${version.status}`),
      version.error ? h("p", { class: "error" }, version.error) : null,
      warnings.length
        ? h("ul", { class: "data-warnings", id: "data-warnings", role: "note", aria: { label: "Data warnings" } }, ...warnings.map((warning) => h("li", {}, warning)))
        : null,
      h("p", { id: "progress-text" }, progressText(version)),
      describeComparison(version.comparison)
        ? h("p", { id: "comparison", class: `comparison comparison-${version.comparison.verdict ?? version.comparison.status}` }, describeComparison(version.comparison))
        : null,
      curveBox,
      h(
        "table",
        { class: "metrics", id: "metrics" },
        h("caption", {}, "Metrics on the validation split"),
        h("tbody", {}, ...scalar.map(([k, v]) => h("tr", {}, h("th", { attrs: { scope: "row" } }, k), h("td", {}, formatMetric(k, v))))),
      ),
      f1 ? classBox : null,
      confusion ? confusionTable(confusion) : null,
      errors.length ? errorGallery(errors) : null,
    );
    curve = chartIn(curveBox, curveOption(version));
    if (f1) {
      perClass = chartIn(classBox, {
        title: { text: "F1 per class", textStyle: { fontSize: 13 } },
        xAxis: { type: "category", data: Object.keys(f1) },
        yAxis: { type: "value", min: 0, max: 1 },
        series: [{ type: "bar", data: Object.values(f1) }],
      });
    }
  }

  async function load(): Promise<void> {
    const page = await api<ApiPage<ModelVersion>>("model-versions", { query: { project: context.project.id } });
    versions.clear();
    for (const version of page.results) versions.set(version.id, version);
    if (selected === null) selected = page.results[0]?.id ?? null;
    render();
  }

  const unsubscribe = context.live.on((event) => {
    if (event.event !== "training.progress") return;
    const payload = event.payload as Record<string, unknown>;
    const id = Number(payload.version);
    const known = versions.get(id);
    if (!known) {
      void load();
      return;
    }
    versions.set(id, applyProgress(known, payload));
    if (payload.status && payload.status !== "training") {
      void load(); // finished: fetch its metrics
      return;
    }
    // Update in place, so the chart keeps its state while the curve grows.
    const row = table.querySelector(`tr[data-version="${id}"] .progress-cell`);
    if (row) row.textContent = progressText(versions.get(id)!);
    if (selected === id) {
      const text = document.getElementById("progress-text");
      if (text) text.textContent = progressText(versions.get(id)!);
      curve?.setOption(curveOption(versions.get(id)!));
    }
  });

  void load();
  return () => {
    unsubscribe();
    curve?.dispose();
    perClass?.dispose();
  };
};

export function progressText(version: ModelVersion): string {
  const p = version.progress ?? {};
  if (!p.epochs) return version.status === "training" ? "starting…" : "";
  // Before the first epoch the backbone's features are extracted (anomaly: chunks; patch head: views).
  if (p.metric_name?.startsWith("feature_")) return `extracting features ${p.epoch}/${p.epochs}`;
  // Then a goods-only anomaly detector fits its flow, in steps rather than epochs.
  if (p.metric_name === "flow_steps") return `fitting the flow: step ${p.epoch}/${p.epochs}, loss ${(p.loss ?? 0).toFixed(4)}`;
  const metric = p.metric === null || p.metric === undefined ? "" : `, ${p.metric_name ?? "metric"} ${p.metric.toFixed(3)}`;
  return `epoch ${p.epoch}/${p.epochs}, loss ${(p.loss ?? 0).toFixed(4)}${metric}`;
}

function headline(version: ModelVersion): string {
  const m = version.metrics ?? {};
  for (const key of ["defect_recall", "image_auroc", "mean_iou", "accuracy", "auroc", "iou"]) {
    if (typeof m[key] === "number") return `${key} ${formatMetric(key, m[key] as number)}`;
  }
  return "";
}

function formatMetric(key: string, value: number): string {
  return /recall|accuracy|reject|iou|dice|auroc|f1/.test(key) ? percent(value) : value.toFixed(4);
}

function curveOption(version: ModelVersion): Record<string, unknown> {
  const history = version.progress?.history ?? [];
  return {
    legend: { top: 0 },
    xAxis: { type: "category", name: "epoch", data: history.map((p) => p.epoch) },
    yAxis: [
      { type: "value", name: "loss" },
      { type: "value", name: version.progress?.metric_name ?? "metric", min: 0, max: 1 },
    ],
    series: [
      { name: "loss", type: "line", data: history.map((p) => p.loss), showSymbol: history.length < 40 },
      {
        name: version.progress?.metric_name ?? "metric",
        type: "line",
        yAxisIndex: 1,
        data: history.map((p) => p.metric),
        showSymbol: history.length < 40,
      },
    ],
  };
}

function confusionTable(confusion: { labels: string[]; matrix: number[][] }): HTMLElement {
  return h(
    "table",
    { class: "confusion", id: "confusion" },
    h("caption", {}, "Confusion matrix (rows: truth, columns: model)"),
    h("thead", {}, h("tr", {}, h("td", {}), ...confusion.labels.map((l) => h("th", { attrs: { scope: "col" } }, l)))),
    h(
      "tbody",
      {},
      ...confusion.matrix.map((row, i) =>
        h(
          "tr",
          {},
          h("th", { attrs: { scope: "row" } }, confusion.labels[i] ?? ""),
          ...row.map((n, j) => h("td", { class: i === j ? "diagonal" : n > 0 ? "off" : "" }, String(n))),
        ),
      ),
    ),
  );
}

function errorGallery(errors: ExampleError[]): HTMLElement {
  return h(
    "section",
    { class: "error-gallery", id: "example-errors", aria: { label: "Example errors" } },
    h("h3", {}, "Validation images the model got wrong"),
    h(
      "ul",
      {},
      ...errors.map((error) =>
        h(
          "li",
          {},
          h("img", { src: `/api/v1/annotations/${error.annotation}/image`, alt: `Labelled ${error.truth}, model said ${error.predicted}` }),
          h("span", {}, `${error.truth} → ${error.predicted} (P(defect) ${(error.p_defect * 100).toFixed(0)} %)`),
        ),
      ),
    ),
  );
}
