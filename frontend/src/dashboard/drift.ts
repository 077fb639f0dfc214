// Drift since deployment (GET /api/v1/projects/{id}/drift): per station, its latest parts
// against the first ones the deployed models scored there, per signal (brightness, contrast,
// defect score, anomaly ratio): PSI, KS p-value, level. Each station's most-moved signal is
// drawn as the two windows' histograms on one scale; open alerts are listed first. Updated
// live when the server pushes drift.detected / drift.cleared.

import { api, ApiError } from "../api";
import { chartIn, type Chart, type ChartOption } from "../charts";
import type { PageContext } from "../context";
import { h, replaceChildren } from "../dom";

export interface DriftSignal {
  signal: string;
  label: string;
  /** "camera": a signal of the image itself; "models": one the models output. */
  source: "camera" | "models";
  level: "stable" | "watch" | "drift";
  psi: number;
  ks: number;
  p_value: number;
  reference_parts: number;
  current_parts: number;
  reference_mean: number;
  current_mean: number;
  histogram: { edges: number[]; reference: number[]; current: number[] };
}

export interface DriftStation {
  station: number;
  line: string;
  name: string;
  level: "stable" | "watch" | "drift" | "too_few_parts";
  /** The worst level of the models' own signals (defect score, anomaly ratio). */
  models_level: "stable" | "watch" | "drift" | "too_few_parts";
  baseline_at: string | null;
  /** When drift_review began holding this station (its drift's start); null: not held. */
  held_since: string | null;
  /** Thresholds fitted on the parts people decided since then; null: none yet. */
  drift_calibration: DriftCalibration | null;
  /** Decided parts since the drift needed before those thresholds can pass any (null: not held). */
  drift_parts_needed: number | null;
  reference: { parts: number; from: string | null; to: string | null };
  current: { parts: number; from: string | null; to: string | null };
  signals: DriftSignal[];
}

export interface DriftCalibration {
  id: number;
  parts: number;
  t_pass: number;
  t_fail: number;
  expected_review_rate: number;
  escape_rate: number;
  created_at: string;
}

export interface DriftAlert {
  id: number;
  station: number;
  line: string;
  name: string;
  signal: string;
  label: string;
  source: "camera" | "models";
  psi: number;
  latest_psi: number;
  reference_mean: number;
  current_mean: number;
  opened_at: string;
}

export interface Drift {
  deployed: string | null;
  drift_review: DriftReview;
  window: number;
  min_parts: number;
  stations: DriftStation[];
  open_alerts: DriftAlert[];
  /** Stations whose parts go to people now because of their open alerts. */
  held_stations: number[];
}

export type DriftReview = "off" | "models" | "any";

/** The manager's choices for drift_review, in words, and what each choice does once made. */
export const DRIFT_REVIEW_CHOICES: { value: DriftReview; label: string; done: string }[] = [
  { value: "off", label: "Never: alerts only inform", done: "Drifting stations' parts are decided by the models again." },
  {
    value: "models",
    label: "When the models' outputs drift (defect score, anomaly ratio)",
    done: "Parts from a station whose models' outputs drift now go to people; camera-only changes are reported.",
  },
  { value: "any", label: "On any drift, camera brightness, contrast and sharpness too", done: "Parts from any drifting station now go to people." },
];

const LEVEL_WORDS: Record<DriftStation["level"], string> = {
  stable: "stable",
  watch: "moderate shift",
  drift: "drift",
  too_few_parts: "not enough parts yet",
};

/** The signal to draw for a station: the one that moved most (largest PSI). */
export function mostMoved(station: DriftStation): DriftSignal | undefined {
  return [...station.signals].sort((a, b) => b.psi - a.psi)[0];
}

/** One line for people about a station. */
export function describeStation(station: DriftStation, minParts: number): string {
  const where = `${station.line} / ${station.name}`;
  if (station.level === "too_few_parts") {
    return `${where}: not enough parts yet (${station.reference.parts} reference, ${station.current.parts} latest; ${minParts} of each needed).`;
  }
  const moved = mostMoved(station);
  const detail = moved ? `; most moved: ${moved.label}, ${formatMean(moved.reference_mean)} → ${formatMean(moved.current_mean)} (PSI ${moved.psi.toFixed(2)})` : "";
  // A camera change the models do not mind (they standardise intensity) is not a reason to
  // distrust their decisions; one that moved their outputs is.
  const models =
    station.level === "stable"
      ? ""
      : station.models_level === "stable"
        ? " The models' outputs have not moved: a camera change they do not mind so far."
        : ` The models' outputs moved too (${LEVEL_WORDS[station.models_level]}).`;
  return `${where}: ${LEVEL_WORDS[station.level]}${detail}.${models}`;
}

/** What drift_review does with a held station's parts now, in words (null: not held). */
export function describeHold(station: DriftStation): string | null {
  if (!station.held_since) return null;
  const fitted = station.drift_calibration;
  if (!fitted || fitted.t_pass < 0) {
    const needed = station.drift_parts_needed ? ` of at least ${station.drift_parts_needed}` : "";
    const decided = ` (${fitted?.parts ?? 0}${needed} decided so far)`;
    return `Its parts go to people until the drift ends; once enough of them are decided${decided}, the models decide again on thresholds fitted to them.`;
  }
  const review = Math.round(fitted.expected_review_rate * 100);
  return `Decided by the models again on thresholds fitted to the ${fitted.parts} parts people decided since the drift began; about ${review} % still go to people.`;
}

function formatMean(value: number): string {
  return Math.abs(value) >= 10 ? value.toFixed(1) : value.toFixed(3);
}

/** The two windows' histograms as bars over the bins' centres. */
export function histogramOption(signal: DriftSignal): ChartOption {
  const { edges, reference, current } = signal.histogram;
  const span = (edges[edges.length - 1] ?? 0) - (edges[0] ?? 0);
  const digits = span >= 50 ? 0 : span >= 5 ? 1 : span >= 0.5 ? 2 : 3;
  const centres = reference.map((_, i) => (((edges[i] ?? 0) + (edges[i + 1] ?? 0)) / 2).toFixed(digits));
  return {
    legend: { top: 0 },
    tooltip: { trigger: "axis", renderMode: "richText", confine: true },
    xAxis: { type: "category", name: signal.label, nameLocation: "middle", nameGap: 28, data: centres },
    yAxis: { type: "value", name: "share of parts", axisLabel: { formatter: (v: number) => `${Math.round(v * 100)} %` } },
    series: [
      { name: `first ${signal.reference_parts} parts`, type: "bar", data: reference, barGap: "0%" },
      { name: `latest ${signal.current_parts}`, type: "bar", data: current },
    ],
  };
}

export function driftPanel(context: PageContext): { element: HTMLElement; load: () => Promise<void>; dispose: () => void } {
  const project = context.project;
  const charts: Chart[] = [];
  const body = h("div", { class: "drift-stations", id: "drift-stations" });
  const alerts = h("ul", { class: "drift-alerts", id: "drift-alerts", aria: { label: "Open drift alerts" } });
  const hint = h("p", { class: "hint", id: "drift-hint" });
  const message = h("p", { class: "message", role: "alert" });
  // The manager's choice: while a station drifts, its parts go to people (audited).
  const reviewSelect = h(
    "select",
    { id: "drift-review", name: "drift_review" },
    ...DRIFT_REVIEW_CHOICES.map((choice) => h("option", { value: choice.value }, choice.label)),
  );
  const reviewStatus = h("span", { role: "status", id: "drift-review-status" });
  let savedReview: DriftReview = "off";
  reviewSelect.addEventListener("change", async () => {
    const wanted = reviewSelect.value as DriftReview;
    try {
      await api(`projects/${project.id}`, { method: "PATCH", body: { drift_review: wanted } });
      savedReview = wanted;
      reviewStatus.textContent = DRIFT_REVIEW_CHOICES.find((choice) => choice.value === wanted)?.done ?? "";
      context.announce(reviewStatus.textContent);
      await load();
    } catch (error) {
      reviewSelect.value = savedReview;
      reviewStatus.textContent = error instanceof ApiError ? error.detail : String(error);
    }
  });
  const element = h(
    "section",
    { class: "panel drift", id: "drift", aria: { label: "Drift since deployment" } },
    h("header", {}, h("h2", {}, "Drift since deployment")),
    hint,
    h(
      "p",
      { class: "filters" },
      h("label", { for: "drift-review" }, "Send a drifting station's parts to people (its calibration may no longer hold): "),
      reviewSelect,
      reviewStatus,
    ),
    alerts,
    message,
    body,
  );

  // A lasting change (a new lamp, a new material) is accepted as the station's new normal:
  // drift is measured from the next parts on and its alerts close (audited).
  function acceptButton(station: DriftStation): HTMLElement {
    const button = h("button", { type: "button", class: "accept-baseline", data: { station: String(station.station) } }, "Accept the latest parts as the new normal");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api(`stations/${station.station}/drift-baseline`, { method: "POST" });
        context.announce(`${station.name}: drift is measured from its next parts on.`);
        await load();
      } catch (error) {
        button.disabled = false;
        message.textContent = error instanceof ApiError ? error.detail : String(error);
      }
    });
    return button;
  }

  async function load(): Promise<void> {
    charts.splice(0).forEach((chart) => chart.dispose());
    let drift: Drift;
    try {
      drift = await api<Drift>(`projects/${project.id}/drift`);
    } catch (error) {
      message.textContent = error instanceof ApiError ? error.detail : String(error);
      return;
    }
    message.textContent = "";
    savedReview = drift.drift_review;
    reviewSelect.value = drift.drift_review;
    hint.textContent = drift.deployed
      ? `Each station's latest ${drift.window} parts against the first ${drift.window} the deployed models (${drift.deployed}) scored there. PSI under 0.1 is stable, 0.25 and over is drift (with a KS test p < 0.01).`
      : "No model deployed: nothing to compare yet.";
    replaceChildren(
      alerts,
      ...drift.open_alerts.map((alert) =>
        h(
          "li",
          { class: "drift-alert", data: { station: String(alert.station), signal: alert.signal } },
          `${alert.source === "models" ? "Models" : "Camera"} drift at ${alert.line} / ${alert.name}: ${alert.label} ${formatMean(alert.reference_mean)} → ${formatMean(alert.current_mean)} (PSI ${alert.latest_psi.toFixed(2)}), since ${new Date(alert.opened_at).toLocaleString("en", { timeZone: project.time_zone ?? "UTC" })} (plant time)`,
        ),
      ),
    );
    replaceChildren(
      body,
      ...drift.stations.map((station) => {
        const moved = mostMoved(station);
        const chart = h("div", { class: "chart small", role: "img", aria: { label: `${station.name}: ${moved?.label ?? "no signal"} histograms` } });
        const card = h(
          "article",
          {
            class: `drift-station level-${station.level}`,
            data: { station: String(station.station), level: station.level, held: String(drift.held_stations.includes(station.station)) },
          },
          h("p", { class: "drift-summary" }, describeStation(station, drift.min_parts)),
          describeHold(station) ? h("p", { class: "badge held" }, describeHold(station) ?? "") : null,
          station.signals.length
            ? h(
                "table",
                { class: "drift-signals" },
                h("thead", {}, h("tr", {}, ...["Signal", "First parts", "Latest", "PSI", "KS p", "Level"].map((t) => h("th", { attrs: { scope: "col" } }, t)))),
                h(
                  "tbody",
                  {},
                  ...station.signals.map((s) =>
                    h(
                      "tr",
                      { data: { signal: s.signal, level: s.level } },
                      h("th", { attrs: { scope: "row" } }, s.label),
                      h("td", {}, formatMean(s.reference_mean)),
                      h("td", {}, formatMean(s.current_mean)),
                      h("td", {}, s.psi.toFixed(2)),
                      h("td", {}, s.p_value < 0.001 ? "< 0.001" : s.p_value.toFixed(3)),
                      h("td", {}, LEVEL_WORDS[s.level]),
                    ),
                  ),
                ),
              )
            : null,
          moved ? chart : null,
          station.level === "drift" || station.level === "watch" ? acceptButton(station) : null,
          station.baseline_at
            ? h("p", { class: "hint" }, `Measured from the new normal accepted ${new Date(station.baseline_at).toLocaleString("en", { timeZone: project.time_zone ?? "UTC" })} (plant time).`)
            : null,
        );
        if (moved) charts.push(chartIn(chart, histogramOption(moved)));
        return card;
      }),
    );
  }

  const unsubscribe = context.live.on((event) => {
    if (event.event === "drift.detected" || event.event === "drift.cleared" || event.event === "drift.calibrated") void load();
  });
  return {
    element,
    load,
    dispose: () => {
      unsubscribe();
      charts.forEach((chart) => chart.dispose());
    },
  };
}
