// Manager dashboards over the rollup API (/api/v1/projects/{id}/dashboard/{chart}): first-pass
// yield by line, station, SKU or shift; defect Pareto; throughput; automation; escape and
// false-reject rates from audits; review backlog; reviewers; model versions; and the
// workload/escape curve with the operating point, which a manager sets here.

import { api, ApiError, type Page as ApiPage, type Query, withQuery } from "../api";
import { chartIn, type Chart, type ChartOption } from "../charts";
import type { Page, PageContext } from "../context";
import { h, percent, replaceChildren } from "../dom";
import { addDays, plantClock, plantMidnight, plantToday } from "../plantTime";
import { driftPanel } from "../dashboard/drift";
import { describeSample, type RoutingCalibration } from "../dashboard/routing";
import { type ModelVersion } from "./training";

export interface SeriesRow {
  bucket: string;
  group: string;
  group_id: number | null;
  [figure: string]: string | number | null;
}

export interface ChartData<Row = SeriesRow> {
  columns: string[];
  rows: Row[];
}

interface ParetoRow {
  defect_class_id: number | null;
  defect_class: string | null;
  failed: number;
  share: number | null;
  cumulative_share: number | null;
}

interface Summary extends ChartData<Record<string, number | null>> {
  review_queue: { open: number; claimed: number; oldest_waiting_seconds: number | null; sla_breaches: number };
}

interface CurvePoint {
  target_escape: number;
  review_rate: number;
  escape_rate: number;
}

interface Routing {
  deployed: string | null;
  operating_point: { target_escape_rate: number; confidence: number; audit_rate: number };
  calibration: (RoutingCalibration & { curve: CurvePoint[] }) | null;
  human_labels_since_deployment: number;
}

interface Station {
  id: number;
  line: string;
  line_id: number;
  name: string;
}

interface Reviewer {
  reviewer: string;
  decisions: number;
  decisions_per_hour: number | null;
  golden_answered: number;
  golden_accuracy: number | null;
}

export interface Filters {
  from: string;
  to: string;
  line: string;
  sku: string;
  group_by: string;
}

/** The 30 days up to the plant's today. */
export function defaultFilters(today: Date = new Date(), timeZone = "UTC"): Filters {
  const to = plantToday(timeZone, today);
  return { from: addDays(to, -29), to, line: "", sku: "", group_by: "line" };
}

/** One line per group: the shape ECharts draws a multi-series time chart from. */
export function seriesByGroup(rows: SeriesRow[], figure: string): { name: string; data: [string, number | null][] }[] {
  const groups = new Map<string, [string, number | null][]>();
  for (const row of rows) {
    const points = groups.get(row.group) ?? [];
    const value = row[figure];
    points.push([plantClock(row.bucket), typeof value === "number" ? value : null]);
    groups.set(row.group, points);
  }
  return [...groups.entries()].map(([name, data]) => ({ name, data }));
}

export const dashboardPage: Page = (context: PageContext) => {
  const project = context.project;
  const timeZone = project.time_zone ?? "UTC";
  const filters = defaultFilters(new Date(), timeZone);
  const charts: Chart[] = [];
  const message = h("p", { class: "message", role: "alert", id: "dashboard-message" });
  const tiles = h("div", { class: "tiles", id: "tiles" });
  const grid = h("div", { class: "charts" });
  const tables = h("div", { class: "charts" });
  const lineSelect = h("select", { id: "filter-line", name: "line" }, h("option", { value: "" }, "All lines"));

  const input = (id: keyof Filters, label: string, type: string) => {
    const field = h("input", { id: `filter-${id}`, name: id, type, value: filters[id] });
    field.addEventListener("change", () => {
      filters[id] = field.value;
    });
    return h("label", { for: `filter-${id}` }, label, field);
  };
  const groupSelect = h(
    "select",
    { id: "filter-group_by", name: "group_by" },
    ...["none", "line", "station", "sku", "shift"].map((g) => {
      const option = h("option", { value: g }, g === "none" ? "Everything together" : `By ${g}`);
      option.selected = g === filters.group_by;
      return option;
    }),
  );
  groupSelect.addEventListener("change", () => {
    filters.group_by = groupSelect.value;
  });
  lineSelect.addEventListener("change", () => {
    filters.line = lineSelect.value;
  });

  const form = h(
    "form",
    {
      class: "filters",
      aria: { label: "Filters" },
      on: {
        submit: (event) => {
          event.preventDefault();
          void load();
        },
      },
    },
    input("from", "From", "date"),
    input("to", "To", "date"),
    h("label", { for: "filter-line" }, "Line", lineSelect),
    input("sku", "SKU", "text"),
    h("label", { for: "filter-group_by" }, "Group", groupSelect),
    h("button", { type: "submit", id: "apply-filters" }, "Apply"),
  );

  const drift = driftPanel(context);
  replaceChildren(
    context.root,
    h("div", { class: "dashboard" }, h("h1", {}, "Dashboard: ", project.name), h("p", { class: "hint", id: "plant-time" }, `Days, shifts and times are the plant's (${timeZone}).`), form, message, tiles, grid, drift.element, tables),
  );

  function query(grouped: boolean): Query {
    return {
      from: filters.from,
      to: filters.to,
      line: filters.line || null,
      sku: filters.sku || null,
      group_by: grouped ? filters.group_by : null,
    };
  }

  function csvLink(chart: string, grouped: boolean): HTMLElement {
    const href = withQuery(`/api/v1/projects/${project.id}/dashboard/${chart}`, { ...query(grouped), format: "csv" });
    return h("a", { href, attrs: { download: `${chart}.csv` }, data: { chart } }, "CSV");
  }

  function panel(id: string, title: string, chart: string | null, grouped: boolean, option: ChartOption | null): HTMLElement {
    const box = h("div", { class: "chart", id: `chart-${id}`, role: "img", aria: { label: title } });
    const section = h(
      "section",
      { class: "panel", aria: { label: title } },
      h("header", {}, h("h2", {}, title), chart ? csvLink(chart, grouped) : null),
      box,
    );
    grid.append(section);
    if (option) charts.push(chartIn(box, option));
    return section;
  }

  function tile(key: string, label: string, value: number | null | undefined, format: (v: number) => string): HTMLElement {
    return h(
      "div",
      { class: "tile", id: `tile-${key}`, data: { value: value === null || value === undefined ? "" : String(value) } },
      h("div", { class: "figure" }, value === null || value === undefined ? "–" : format(value)),
      h("div", { class: "label" }, label),
    );
  }

  function timeOption(rows: SeriesRow[], figure: string, asPercent: boolean, kind: "line" | "bar" = "line"): ChartOption {
    return {
      legend: { top: 0, type: "scroll" },
      xAxis: { type: "time" },
      yAxis: asPercent
        ? { type: "value", min: 0, max: 1, axisLabel: { formatter: (v: number) => `${Math.round(v * 100)} %` } }
        : { type: "value" },
      series: seriesByGroup(rows, figure).map((s) => ({ name: s.name, type: kind, data: s.data, showSymbol: s.data.length < 40, connectNulls: false })),
    };
  }

  async function load(): Promise<void> {
    message.textContent = "";
    charts.splice(0).forEach((chart) => chart.dispose());
    replaceChildren(grid);
    replaceChildren(tables);
    const base = `projects/${project.id}/dashboard`;
    try {
      const [summary, fpy, pareto, throughput, automation, audits] = await Promise.all([
        api<Summary>(`${base}/summary`, { query: query(false) }),
        api<ChartData>(`${base}/yield`, { query: query(true) }),
        api<ChartData<ParetoRow>>(`${base}/pareto`, { query: query(false) }),
        api<ChartData>(`${base}/throughput`, { query: query(true) }),
        api<ChartData>(`${base}/automation`, { query: query(true) }),
        api<ChartData>(`${base}/audits`, { query: query(false) }),
      ]);
      const totals = summary.rows[0] ?? {};
      const queue = summary.review_queue;
      replaceChildren(
        tiles,
        tile("parts_decided", "Parts decided", totals.parts_decided, (v) => v.toLocaleString("en")),
        tile("first_pass_yield", "First-pass yield", totals.first_pass_yield, (v) => percent(v, 2)),
        tile("automation_rate", "Decided by the models", totals.automation_rate, (v) => percent(v)),
        tile("escape_rate", "Escape rate (audits)", totals.escape_rate, (v) => percent(v, 2)),
        tile("false_reject_rate", "False rejects (audits)", totals.false_reject_rate, (v) => percent(v, 2)),
        tile("review_backlog", "Waiting for review", queue.open + queue.claimed, (v) => String(v)),
        tile("sla_breaches", "SLA breaches", queue.sla_breaches, (v) => String(v)),
      );
      panel("yield", "First-pass yield", "yield", true, timeOption(fpy.rows, "first_pass_yield", true));
      const paretoRows = pareto.rows;
      panel("pareto", "Defect Pareto", "pareto", false, {
        legend: { top: 0 },
        xAxis: { type: "category", data: paretoRows.map((r) => r.defect_class ?? "(unclassified)"), axisLabel: { interval: 0, rotate: paretoRows.length > 5 ? 30 : 0 } },
        yAxis: [
          { type: "value", name: "failed parts" },
          { type: "value", min: 0, max: 1, axisLabel: { formatter: (v: number) => `${Math.round(v * 100)} %` } },
        ],
        series: [
          { name: "failed", type: "bar", data: paretoRows.map((r) => r.failed) },
          { name: "cumulative", type: "line", yAxisIndex: 1, data: paretoRows.map((r) => r.cumulative_share) },
        ],
      });
      panel("throughput", "Throughput (parts per hour)", "throughput", true, timeOption(throughput.rows, "parts_per_hour", false, "bar"));
      panel("automation", "Decided by the models", "automation", true, timeOption(automation.rows, "automation_rate", true));
      panel("audits", "Escape and false-reject rates (audit samples)", "audits", false, {
        legend: { top: 0 },
        xAxis: { type: "time" },
        yAxis: { type: "value", min: 0, axisLabel: { formatter: (v: number) => `${(v * 100).toFixed(1)} %` } },
        series: [
          { name: "escape rate", type: "line", data: audits.rows.map((r) => [plantClock(r.bucket), r.escape_rate]) },
          { name: "false-reject rate", type: "line", data: audits.rows.map((r) => [plantClock(r.bucket), r.false_reject_rate]) },
        ],
      });
    } catch (error) {
      message.textContent = error instanceof ApiError ? error.detail : String(error);
      return;
    }
    await Promise.all([loadRouting(), loadTables(), drift.load()]);
  }

  async function loadRouting(): Promise<void> {
    const routing = await api<Routing>(`projects/${project.id}/routing`);
    const curve = routing.calibration?.curve ?? [];
    const target = routing.operating_point.target_escape_rate;
    const targetInput = h("input", {
      id: "target-escape",
      type: "number",
      value: String(target * 100),
      attrs: { min: "0.01", max: "50", step: "0.01" },
    });
    const status = h("span", { role: "status", id: "operating-point-status" });
    const section = panel(
      "routing",
      routing.deployed ? `Review workload vs escape rate (${routing.deployed})` : "Review workload vs escape rate (no model deployed)",
      null,
      false,
      curve.length
        ? {
            xAxis: { type: "value", name: "escape rate", axisLabel: { formatter: (v: number) => `${(v * 100).toFixed(1)} %` } },
            yAxis: { type: "value", name: "sent to people", min: 0, max: 1, axisLabel: { formatter: (v: number) => `${Math.round(v * 100)} %` } },
            series: [
              {
                name: "workload",
                type: "line",
                data: curve.map((p) => [p.escape_rate, p.review_rate]),
                markPoint: {
                  data: nearest(curve, target) ? [{ name: "operating point", coord: [nearest(curve, target)!.escape_rate, nearest(curve, target)!.review_rate] }] : [],
                },
              },
            ],
          }
        : null,
    );
    section.append(
      h(
        "form",
        {
          class: "filters",
          on: {
            submit: async (event) => {
              event.preventDefault();
              try {
                await api(`projects/${project.id}`, { method: "PATCH", body: { target_escape_rate: Number(targetInput.value) / 100 } });
                status.textContent = "Operating point saved; thresholds refitted.";
                context.announce(status.textContent);
              } catch (error) {
                status.textContent = error instanceof ApiError ? error.detail : String(error);
              }
            },
          },
        },
        h("label", { for: "target-escape" }, "Target escape rate (%)", targetInput),
        h("button", { type: "submit", id: "save-operating-point" }, "Set operating point"),
        status,
        h("span", {}, `Human labels since the deployed model was trained: ${routing.human_labels_since_deployment}`),
      ),
      h("p", { id: "calibration-sample", class: "hint" }, routing.deployed ? describeSample(routing.calibration, timeZone) : ""),
    );
  }

  async function loadTables(): Promise<void> {
    const [quality, versions] = await Promise.all([
      api<{ reviewers: Reviewer[] }>("quality", { query: { project: project.id, since: plantMidnight(filters.from, timeZone), until: plantMidnight(addDays(filters.to, 1), timeZone) } }),
      api<ApiPage<ModelVersion>>("model-versions", { query: { project: project.id } }),
    ]);
    tables.append(
      table(
        "reviewers",
        "Reviewers",
        ["Reviewer", "Decisions", "Per hour", "Golden answered", "Golden accuracy"],
        quality.reviewers.map((r) => [r.reviewer, String(r.decisions), r.decisions_per_hour?.toFixed(1) ?? "–", String(r.golden_answered), percent(r.golden_accuracy)]),
      ),
      table(
        "model-versions",
        "Model versions",
        ["Version", "Kind", "Status", "Key metrics"],
        versions.results.map((v) => [`#${v.id}`, v.kind, v.status, keyMetrics(v.metrics)]),
      ),
    );
  }

  async function loadStations(): Promise<void> {
    const stations = await api<ApiPage<Station>>("stations", { query: { project: project.id } });
    const lines = new Map(stations.results.map((s) => [s.line_id, s.line]));
    for (const [id, name] of lines) lineSelect.append(h("option", { value: String(id) }, name));
  }

  // The audited parts showed the models breaking a target: the thresholds were fitted again.
  const unsubscribe = context.live.on((event) => {
    if (event.event === "routing.shifted") void load();
  });
  void loadStations();
  void load();
  return () => {
    unsubscribe();
    charts.forEach((chart) => chart.dispose());
    drift.dispose();
  };
};

function nearest(curve: CurvePoint[], target: number): CurvePoint | undefined {
  return [...curve].sort((a, b) => Math.abs(a.target_escape - target) - Math.abs(b.target_escape - target))[0];
}

function keyMetrics(metrics: Record<string, unknown>): string {
  return Object.entries(metrics ?? {})
    .filter(([key, value]) => typeof value === "number" && /recall|reject|auroc|iou|accuracy/.test(key))
    .slice(0, 3)
    .map(([key, value]) => `${key} ${percent(value as number)}`)
    .join(", ");
}

function table(id: string, title: string, head: string[], rows: string[][]): HTMLElement {
  return h(
    "section",
    { class: "panel" },
    h(
      "table",
      { class: "data", id },
      h("caption", {}, title),
      h("thead", {}, h("tr", {}, ...head.map((c) => h("th", { attrs: { scope: "col" } }, c)))),
      h("tbody", {}, ...(rows.length ? rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c))))
        : [h("tr", {}, h("td", { attrs: { colspan: String(head.length) } }, "None yet."))])),
    ),
  );
}
