// The live review console: the queue updates itself from the websocket; the reviewer claims
// the next part, looks at it (zoom, pan, heatmap and mask overlays, scores, why it was
// routed) and decides it from the keyboard, with a short grace period to undo.

import { api, ApiError, type DefectClass, type Page as ApiPage, type PartView, type ReviewItem } from "../api";
import type { Page, PageContext } from "../context";
import { ago, h, percent, replaceChildren } from "../dom";
import { commandFor, KEY_HELP, type Command } from "../review/keys";
import { ReviewQueue, slaState } from "../review/queue";
import { DecisionBuffer } from "../review/undo";

export const UNDO_GRACE_MS = 5_000;

export const REASONS: Record<string, string> = {
  cold_start: "Cold start: no deployed model yet",
  uncertain: "Model unsure",
  model_error: "Model error",
  disagreement: "Classifier and anomaly detector disagree",
  out_of_distribution: "Unlike anything in training",
  audit_sample: "Random audit of an automatic verdict",
  golden: "Golden part (known answer)",
  region_changed: "Station's region changed since the models were trained",
};

interface Decision {
  outcome: "pass" | "fail";
  defect_class?: number;
}

export const reviewPage: Page = (context: PageContext) => new ReviewConsole(context).mount();

class ReviewConsole {
  private readonly queue: ReviewQueue;
  private readonly classes: DefectClass[];
  private current: ReviewItem | null = null;
  private lastDecided: ReviewItem | null = null;
  private readonly buffer: DecisionBuffer<Decision>;
  private overlays = { heatmap: false, mask: false };
  private view = { scale: 1, x: 0, y: 0 };
  private viewIndex = 0;
  private readonly viewStrip = h("div", { class: "view-strip", id: "views", role: "group", aria: { label: "Camera views" } });
  private claiming = false;

  // Elements
  private readonly queueList = h("ol", { id: "queue-list", class: "queue-list", aria: { label: "Waiting parts" } });
  private readonly queueCount = h("span", { id: "queue-count" }, "0");
  private readonly breachedCount = h("span", { id: "sla-breached" }, "0");
  private readonly stage = h("div", { class: "stage" });
  private readonly viewer = h(
    "div",
    { class: "viewer", id: "viewer", tabIndex: 0, role: "img", aria: { label: "Part image: scroll to zoom, drag to pan" } },
    this.stage,
  );
  private readonly detail = h("div", { id: "current", class: "current" });
  private readonly undoBar = h("div", { id: "undo-bar", class: "undo-bar", role: "status", aria: { live: "polite" } });
  private readonly message = h("p", { id: "console-message", class: "message", role: "alert" });
  private readonly help = h(
    "dl",
    { class: "key-help", id: "key-help", hidden: true },
    ...KEY_HELP.flatMap(([key, action]) => [h("dt", {}, h("kbd", {}, key)), h("dd", {}, action)]),
  );
  private timers: number[] = [];
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly context: PageContext) {
    this.queue = new ReviewQueue(context.session.me.id, context.project.id);
    this.classes = [...context.project.defect_classes].sort((a, b) => (a.hotkey ?? 99) - (b.hotkey ?? 99));
    this.buffer = new DecisionBuffer<Decision>((id, decision) => this.send(id, decision), UNDO_GRACE_MS);
  }

  mount(): () => void {
    const { root, project } = this.context;
    replaceChildren(
      root,
      h(
        "div",
        { class: "review" },
        h(
          "aside",
          { class: "queue-panel", aria: { label: "Queue" } },
          h("h1", {}, "Review: ", project.name),
          h("p", { class: "queue-stats" }, "Waiting: ", this.queueCount, " · SLA breached: ", this.breachedCount),
          this.queueList,
        ),
        h(
          "section",
          { class: "viewer-panel", aria: { label: "Part" } },
          this.viewer,
          h(
            "div",
            { class: "toolbar", role: "toolbar", aria: { label: "View" } },
            this.button("Heatmap (H)", () => this.run({ kind: "overlay", overlay: "heatmap" }), "toggle-heatmap"),
            this.button("Mask (M)", () => this.run({ kind: "overlay", overlay: "mask" }), "toggle-mask"),
            this.button("Zoom in (+)", () => this.run({ kind: "zoom", factor: 1.25 })),
            this.button("Zoom out (−)", () => this.run({ kind: "zoom", factor: 0.8 })),
            this.button("Fit (0)", () => this.run({ kind: "reset-view" })),
          ),
          this.viewStrip,
        ),
        h(
          "aside",
          { class: "detail-panel", aria: { label: "Decision" } },
          this.detail,
          this.undoBar,
          this.message,
          this.button("Keys (?)", () => this.run({ kind: "help" }), "show-keys"),
          this.help,
        ),
      ),
    );
    this.bindViewer();
    const onKey = (event: KeyboardEvent) => this.onKey(event);
    document.addEventListener("keydown", onKey);
    this.unsubscribe = this.context.live.on((event) => {
      if (this.queue.apply(event)) this.renderQueue();
    });
    this.timers.push(window.setInterval(() => this.tick(), 1000));
    const flushOnLeave = () => void this.buffer.flush();
    window.addEventListener("pagehide", flushOnLeave);
    void this.load();
    this.renderCurrent();
    return () => {
      document.removeEventListener("keydown", onKey);
      window.removeEventListener("pagehide", flushOnLeave);
      this.unsubscribe?.();
      this.timers.forEach((t) => window.clearInterval(t));
      void this.buffer.flush();
    };
  }

  private button(label: string, action: () => void, id?: string): HTMLButtonElement {
    return h("button", { type: "button", id, on: { click: action } }, label);
  }

  private async load(): Promise<void> {
    const project = this.context.project.id;
    const [open, claimed] = await Promise.all([
      api<ApiPage<ReviewItem>>("review-items", { query: { project, status: "open" } }),
      api<ApiPage<ReviewItem>>("review-items", { query: { project, status: "claimed" } }),
    ]);
    open.results.forEach((item) => this.queue.upsert(item));
    const mine = claimed.results.find((item) => item.claimed_by === this.context.session.me.id);
    if (mine && !this.current) this.show(mine);
    this.renderQueue();
  }

  // --- commands --------------------------------------------------------------------------

  private onKey(event: KeyboardEvent): void {
    const target = event.target as HTMLElement | null;
    if (target && ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName)) return;
    if (event.key === "Enter" && target && target.tagName === "BUTTON") return;
    const command = commandFor(event, this.classes);
    if (!command) return;
    event.preventDefault();
    this.run(command);
  }

  private run(command: Command): void {
    switch (command.kind) {
      case "pass":
        void this.decide({ outcome: "pass" });
        break;
      case "fail":
        void this.decide({ outcome: "fail", defect_class: command.defectClass });
        break;
      case "next":
        void this.claimNext();
        break;
      case "undo":
        void this.undo();
        break;
      case "release":
        void this.release();
        break;
      case "overlay":
        this.overlays[command.overlay] = !this.overlays[command.overlay];
        this.renderStage();
        break;
      case "zoom":
        this.zoom(command.factor);
        break;
      case "reset-view":
        this.view = { scale: 1, x: 0, y: 0 };
        this.applyView();
        break;
      case "help":
        this.help.hidden = !this.help.hidden;
        break;
      case "view": {
        const count = this.views().length;
        if (count > 1) {
          this.viewIndex = (this.viewIndex + command.step + count) % count;
          this.renderStage();
        }
        break;
      }
    }
  }

  private async claimNext(): Promise<void> {
    if (this.current || this.claiming) return;
    this.claiming = true;
    try {
      // A decided item still in its undo grace stays claimed by me: ask for a different one.
      const held = this.buffer.held;
      const item = await api<ReviewItem | null>("review-items/claim", {
        method: "POST",
        body: { project: this.context.project.id, ...(held ? { exclude: [held.itemId] } : {}) },
      });
      if (item) {
        this.queue.remove(item.id);
        this.show(item);
      } else {
        this.say("The queue is empty.");
      }
      this.renderQueue();
    } catch (error) {
      this.fail(error);
    } finally {
      this.claiming = false;
    }
  }

  private async decide(decision: Decision): Promise<void> {
    const item = this.current;
    if (!item) return;
    this.lastDecided = item;
    this.current = null;
    const label = decision.outcome === "pass" ? "Pass" : `Fail: ${this.className(decision.defect_class)}`;
    this.context.announce(`${item.part.serial} decided ${label}`);
    await this.buffer.hold(item.id, decision);
    this.renderUndo(item, label);
    this.renderCurrent();
    await this.claimNext();
  }

  private async undo(): Promise<void> {
    const held = this.buffer.undo();
    if (!held || !this.lastDecided || this.lastDecided.id !== held.itemId) {
      this.say("Nothing to undo: the last decision was already sent.");
      return;
    }
    const next = this.current;
    this.current = null;
    if (next) {
      try {
        await api(`review-items/${next.id}/release`, { method: "POST" });
      } catch {
        // Its lease will lapse and return it anyway.
      }
    }
    this.show(this.lastDecided);
    this.lastDecided = null;
    replaceChildren(this.undoBar);
    this.say("Decision undone.");
  }

  private async release(): Promise<void> {
    const item = this.current;
    if (!item) return;
    this.current = null;
    this.renderCurrent();
    try {
      await api(`review-items/${item.id}/release`, { method: "POST" });
    } catch (error) {
      this.fail(error);
    }
  }

  private async send(itemId: number, decision: Decision): Promise<void> {
    try {
      await api(`review-items/${itemId}/decide`, { method: "POST", body: decision });
    } catch (error) {
      this.fail(error);
    } finally {
      if (this.lastDecided?.id === itemId) replaceChildren(this.undoBar);
    }
  }

  // --- rendering -------------------------------------------------------------------------

  private show(item: ReviewItem): void {
    this.current = item;
    this.viewIndex = 0;
    this.view = { scale: 1, x: 0, y: 0 };
    this.renderCurrent();
  }

  private className(id: number | undefined): string {
    return this.classes.find((dc) => dc.id === id)?.name ?? "?";
  }

  private renderQueue(): void {
    const now = Date.now();
    const items = this.queue.ordered();
    this.queueCount.textContent = String(items.length);
    this.breachedCount.textContent = String(this.queue.breached(now));
    replaceChildren(
      this.queueList,
      ...items.slice(0, 200).map((item) => {
        const sla = slaState(item, now);
        return h(
          "li",
          { class: `queue-item sla-${sla}`, data: { id: String(item.id) } },
          h("span", { class: "serial" }, item.part.serial),
          h("span", { class: "reason" }, REASONS[item.reason] ?? item.reason),
          h("span", { class: "age" }, `waiting ${ago(item.created_at, now)}`),
          h("span", { class: "sla" }, slaText(item, now)),
        );
      }),
    );
  }

  private renderCurrent(): void {
    const item = this.current;
    if (!item) {
      replaceChildren(
        this.detail,
        h("h2", {}, "No part open"),
        h("p", {}, "Press ", h("kbd", {}, "N"), " to take the next part."),
        this.button("Next part (N)", () => this.run({ kind: "next" }), "next-part"),
      );
      replaceChildren(this.stage);
      return;
    }
    const scores = item.scores ?? {};
    const rows: [string, string][] = [
      ["Predicted", scores.predicted_class ?? "–"],
      // What the thresholds were applied to: the models' scores combined (workers/routing/scores.py).
      ["Routing score", percent(scores.defect_score)],
      ["P(defect)", percent(scores.defect_probability)],
      ["Anomaly / limit", scores.anomaly_ratio === undefined ? "–" : scores.anomaly_ratio.toFixed(2)],
      ...Object.entries(scores.probabilities ?? {}).map(([name, p]): [string, string] => [`P(${name})`, percent(p)]),
    ];
    replaceChildren(
      this.detail,
      h("h2", { id: "current-serial" }, item.part.serial),
      h("p", { class: `reason-badge reason-${item.reason}`, id: "current-reason" }, REASONS[item.reason] ?? item.reason),
      h("p", {}, item.station ? `${item.station.line} / ${item.station.name}` : "", item.part.sku ? ` · ${item.part.sku}` : ""),
      h("p", { id: "lease", class: "lease" }, leaseText(item)),
      h("p", { id: "sla", class: `sla sla-${slaState(item)}` }, slaText(item)),
      h(
        "table",
        { class: "scores" },
        h("caption", {}, "Model scores", item.model_version ? ` (${item.model_version})` : ""),
        h("tbody", {}, ...rows.map(([k, v]) => h("tr", {}, h("th", { attrs: { scope: "row" } }, k), h("td", {}, v)))),
      ),
      h(
        "div",
        { class: "actions", role: "group", aria: { label: "Decide" } },
        h("button", { type: "button", class: "pass", id: "decide-pass", on: { click: () => this.run({ kind: "pass" }) } }, "Pass (P)"),
        ...this.classes.map((dc) =>
          h(
            "button",
            {
              type: "button",
              class: "fail",
              data: { defectClass: String(dc.id) },
              on: { click: () => this.run({ kind: "fail", defectClass: dc.id }) },
            },
            `Fail: ${dc.name}${dc.hotkey ? ` (${dc.hotkey})` : ""}`,
          ),
        ),
        this.button("Release (R)", () => this.run({ kind: "release" }), "release"),
      ),
    );
    this.renderStage();
  }

  /** The part's camera views; an item from an older server has only its own image. */
  private views(): PartView[] {
    const item = this.current;
    if (!item) return [];
    if (item.views && item.views.length) return item.views;
    return item.image
      ? [{ inspection: item.image.inspection, station: item.station ? `${item.station.line} / ${item.station.name}` : "", url: item.image.url, ...item.overlays, flagged: true }]
      : [];
  }

  private renderStage(): void {
    const item = this.current;
    const views = this.views();
    const shown = views[this.viewIndex] ?? views[0];
    if (!item || !shown) {
      replaceChildren(this.stage);
      replaceChildren(this.viewStrip);
      return;
    }
    const layers: HTMLElement[] = [h("img", { src: shown.url, alt: `Part ${item.part.serial}, ${shown.station}`, class: "base" })];
    if (this.overlays.heatmap && shown.heatmap) {
      layers.push(h("img", { src: `${shown.heatmap}?render=overlay`, alt: "Anomaly heatmap", class: "overlay heatmap", id: "overlay-heatmap" }));
    }
    if (this.overlays.mask && shown.mask) {
      layers.push(h("img", { src: `${shown.mask}?render=overlay`, alt: "Defect mask", class: "overlay mask", id: "overlay-mask" }));
    }
    const outline = regionOutline(shown);
    replaceChildren(this.stage, ...layers, outline);
    replaceChildren(
      this.viewStrip,
      ...(views.length > 1
        ? views.map((view, index) =>
            h(
              "button",
              {
                type: "button",
                class: view.flagged ? "view flagged" : "view",
                aria: { pressed: String(index === this.viewIndex) },
                on: {
                  click: () => {
                    this.viewIndex = index;
                    this.renderStage();
                  },
                },
              },
              `${index + 1}. ${view.station}${view.flagged ? " (flagged)" : ""}`,
            ),
          )
        : []),
    );
    for (const name of ["heatmap", "mask"] as const) {
      const toggle = document.getElementById(`toggle-${name}`);
      toggle?.setAttribute("aria-pressed", String(this.overlays[name]));
      toggle?.toggleAttribute("disabled", !shown[name]);
    }
    this.applyView();
  }

  private renderUndo(item: ReviewItem, label: string): void {
    replaceChildren(
      this.undoBar,
      `${item.part.serial}: ${label}. `,
      h("button", { type: "button", id: "undo", on: { click: () => this.run({ kind: "undo" }) } }, "Undo (U)"),
      h("span", { class: "countdown", id: "undo-seconds" }, ` ${this.buffer.secondsLeft()} s`),
    );
  }

  private tick(): void {
    const lease = document.getElementById("lease");
    if (lease && this.current) lease.textContent = leaseText(this.current);
    const sla = document.getElementById("sla");
    if (sla && this.current) {
      sla.textContent = slaText(this.current);
      sla.className = `sla sla-${slaState(this.current)}`;
    }
    const seconds = document.getElementById("undo-seconds");
    if (seconds) seconds.textContent = ` ${this.buffer.secondsLeft()} s`;
    this.renderQueue();
  }

  private say(text: string): void {
    this.message.textContent = text;
  }

  private fail(error: unknown): void {
    this.say(error instanceof ApiError ? `${error.detail} (${error.status})` : String(error));
  }

  // --- zoom and pan ----------------------------------------------------------------------

  private zoom(factor: number, cx = 0.5, cy = 0.5): void {
    const box = this.viewer.getBoundingClientRect();
    const scale = Math.min(32, Math.max(1, this.view.scale * factor));
    const applied = scale / this.view.scale;
    // Keep the point under the cursor (or the centre) where it is.
    const px = cx * box.width;
    const py = cy * box.height;
    this.view = { scale, x: px - (px - this.view.x) * applied, y: py - (py - this.view.y) * applied };
    this.applyView();
  }

  private applyView(): void {
    if (this.view.scale === 1) this.view = { scale: 1, x: 0, y: 0 };
    this.stage.style.transform = `translate(${this.view.x}px, ${this.view.y}px) scale(${this.view.scale})`;
    this.viewer.dataset.scale = this.view.scale.toFixed(2);
  }

  private bindViewer(): void {
    this.viewer.addEventListener(
      "wheel",
      (event) => {
        event.preventDefault();
        const box = this.viewer.getBoundingClientRect();
        this.zoom(event.deltaY < 0 ? 1.2 : 1 / 1.2, (event.clientX - box.left) / box.width, (event.clientY - box.top) / box.height);
      },
      { passive: false },
    );
    let drag: { x: number; y: number } | null = null;
    this.viewer.addEventListener("pointerdown", (event) => {
      drag = { x: event.clientX - this.view.x, y: event.clientY - this.view.y };
      this.viewer.setPointerCapture(event.pointerId);
    });
    this.viewer.addEventListener("pointermove", (event) => {
      if (!drag || this.view.scale === 1) return;
      this.view = { ...this.view, x: event.clientX - drag.x, y: event.clientY - drag.y };
      this.applyView();
    });
    this.viewer.addEventListener("pointerup", () => {
      drag = null;
    });
  }
}

export function leaseText(item: ReviewItem, now: number = Date.now()): string {
  if (!item.lease_expires_at) return "";
  const left = Math.round((Date.parse(item.lease_expires_at) - now) / 1000);
  if (left <= 0) return "Lease expired: the part went back to the queue.";
  return `Lease ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left`;
}

export function slaText(item: ReviewItem, now: number = Date.now()): string {
  const left = Date.parse(item.sla_due_at) - now;
  const minutes = Math.round(Math.abs(left) / 60_000);
  return left <= 0 ? `SLA breached ${minutes} min ago` : `SLA due in ${minutes} min`;
}

/** The inspection region the models looked at, outlined over the part, and the ignore zones
 * they saw blanked, shaded: an SVG in the image's own pixel coordinates, letterboxed like the
 * image (object-fit: contain), so it stays in place through zoom and pan. Nothing when the
 * models looked at the whole image untouched. */
function regionOutline(view: PartView): SVGSVGElement | null {
  const { region, width, height } = view;
  const zones = view.ignore_zones ?? [];
  if ((!region && !zones.length) || !width || !height) return null;
  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("class", "region-outline");
  svg.setAttribute("id", "region-outline");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "What the models looked at: inside the dashed box, not the shaded zones");
  const box = (r: { x: number; y: number; width: number; height: number }, kind: string) => {
    const rect = document.createElementNS(svgNs, "rect");
    rect.setAttribute("class", kind);
    rect.setAttribute("x", String(r.x * width));
    rect.setAttribute("y", String(r.y * height));
    rect.setAttribute("width", String(r.width * width));
    rect.setAttribute("height", String(r.height * height));
    rect.setAttribute("vector-effect", "non-scaling-stroke");
    return rect;
  };
  if (region) svg.append(box(region, "region"));
  for (const zone of zones) svg.append(box(zone, "zone"));
  return svg;
}
