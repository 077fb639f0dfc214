// The annotation studio: image-level class, boxes, polygons with holes and vertex editing,
// brush and eraser masks, click-assisted segmentation (GrabCut on the server), pre-labels
// from the deployed models as suggestions; zoom and pan over an image pyramid; keyboard
// shortcuts for every tool and class; undo/redo; autosave with optimistic versioning: a
// stale save gets 409 and the work is kept for the person to merge.

import { api, ApiError, type DefectClass } from "../api";
import type { Page, PageContext } from "../context";
import { type EditorShape, fromStored, type LabelDoc, merge, type StoredLabel, toBody, EMPTY_DOC } from "../annotate/document";
import { emptyMask, paintStroke, type Point, pointInRings, type Shape } from "../annotate/geometry";
import { History } from "../annotate/history";
import { Renderer } from "../annotate/render";
import { fit, type Pyramid, toImage, type View, zoomAt } from "../annotate/viewport";
import { h, percent, replaceChildren } from "../dom";

export type Tool = "select" | "box" | "polygon" | "brush" | "eraser" | "assist";

export const TOOL_KEYS: Record<string, Tool> = { v: "select", b: "box", p: "polygon", d: "brush", e: "eraser", a: "assist" };
export const AUTOSAVE_MS = 1500;

interface TaskImage {
  width: number;
  height: number;
  url: string;
  tiles: string;
  /** The station's inspection region (fractions): training sees only this part of the image. */
  region?: { x: number; y: number; width: number; height: number } | null;
  ignore_zones?: { x: number; y: number; width: number; height: number }[];
}

export interface LabelTask {
  id: number;
  project: number;
  inspection: number;
  status: string;
  priority: number;
  reasons: string[];
  labels_submitted: number;
  labels_required: number;
  image: TaskImage;
  label: StoredLabel | null;
  previous_task: number | null;
  defect_classes: DefectClass[];
  submitted_labels?: (StoredLabel & { author: string })[];
}

interface Labelling {
  tasks: Record<string, number>;
  annotators: { username: string; submitted: number; skipped: number; last_at: string | null }[];
  agreement: { class_kappa: number | null; mean_shape_iou: number | null; tasks_compared: number };
}

interface Prelabels {
  model_version: string | null;
  outcome: "pass" | "fail" | null;
  defect_class: number | null;
  probabilities: Record<string, number> | null;
  shapes: Shape[];
}

interface Revision {
  version: number;
  author: string;
  outcome: string;
  defect_class: number | null;
  shapes_count: number;
  submitted: boolean;
  created_at: string;
}

export const annotatePage: Page = (context: PageContext) => new Studio(context).mount();

class Studio {
  private task: LabelTask | null = null;
  private history = new History<LabelDoc>(EMPTY_DOC);
  private version = 0;
  private dirty = false;
  private saving: Promise<void> | null = null;
  private saveTimer: number | null = null;
  private conflict: { mine: LabelDoc; theirs: StoredLabel } | null = null;
  private tool: Tool = "select";
  private activeClass: number | null;
  private brushRadius = 12;
  private view: View = { scale: 1, x: 0, y: 0 };
  private renderer: Renderer | null = null;
  private selected: EditorShape | null = null;
  private suggestions: EditorShape[] = [];
  private suggestionSource: Prelabels | null = null;
  private draft: Point[] | null = null;
  private holeFor: Extract<EditorShape, { type: "polygon" }> | null = null;
  private cursor: Point | null = null;
  private order: "active" | "random" | "sequential" = "active";
  private assistBox: [number, number, number, number] | null = null;
  private assistPoints: { x: number; y: number; positive: boolean }[] = [];
  private labelling: Labelling | null = null;
  private readonly classes: DefectClass[];

  private readonly canvas = h("canvas", { id: "studio-canvas", tabIndex: 0, aria: { label: "Image to label: scroll to zoom, drag with Space or the right button to pan" } });
  private readonly stage = h("div", { class: "studio-stage" }, this.canvas);
  private readonly toolbar = h("div", { class: "studio-tools", role: "toolbar", aria: { label: "Tools" } });
  private readonly side = h("div", { class: "studio-side" });
  private readonly saveState = h("p", { id: "save-state", role: "status" }, "");
  private readonly message = h("p", { id: "studio-message", class: "message", role: "alert" });
  private readonly conflictBox = h("div", { id: "conflict", class: "conflict", hidden: true, role: "alert" });
  private cleanup: (() => void)[] = [];

  constructor(private readonly context: PageContext) {
    this.classes = [...context.project.defect_classes].sort((a, b) => (a.hotkey ?? 99) - (b.hotkey ?? 99));
    this.activeClass = this.classes[0]?.id ?? null;
  }

  mount(): () => void {
    replaceChildren(
      this.context.root,
      h("div", { class: "studio" }, this.toolbar, h("section", { class: "studio-main", aria: { label: "Image" } }, this.stage), this.side),
    );
    const onKey = (event: KeyboardEvent) => this.onKey(event);
    document.addEventListener("keydown", onKey);
    this.cleanup.push(() => document.removeEventListener("keydown", onKey));
    const observer = new ResizeObserver(() => this.resize());
    observer.observe(this.stage);
    this.cleanup.push(() => observer.disconnect());
    this.bindPointer();
    this.renderTools();
    void this.next();
    (window as unknown as { __loupeStudio?: Studio }).__loupeStudio = this;
    return () => {
      this.cleanup.forEach((fn) => fn());
      void this.saveNow();
    };
  }

  // --- task flow -------------------------------------------------------------------------

  private async loadLabelling(): Promise<void> {
    try {
      this.labelling = await api<Labelling>(`projects/${this.context.project.id}/labelling`);
    } catch {
      this.labelling = null;
    }
  }

  private get manages(): boolean {
    return this.context.session.role === "manager" || this.context.session.role === "admin";
  }

  /** Managers: open the next image whose annotators disagree. */
  private async nextDisputed(): Promise<void> {
    await this.saveNow();
    const page = await api<{ results: LabelTask[] }>("label-tasks", { query: { project: this.context.project.id, status: "needs_adjudication" } });
    const first = page.results[0];
    if (!first) return this.say("No disputed images.");
    await this.open(first.id);
  }

  private async adjudicate(): Promise<void> {
    if (!this.task) return;
    try {
      await api(`label-tasks/${this.task.id}/adjudicate`, { method: "POST", body: toBody(this.doc) });
      this.dirty = false;
      this.context.announce("Adjudicated.");
      await this.loadLabelling();
      await this.nextDisputed();
    } catch (error) {
      this.fail(error);
    }
  }

  private loadSubmitted(label: StoredLabel & { author: string }): void {
    this.history.push(fromStored(label));
    this.renderSide();
    this.draw();
    this.say(`Showing ${label.author}'s label; edit it and adjudicate.`);
  }

  private async next(): Promise<void> {
    await this.saveNow();
    void this.loadLabelling().then(() => this.renderSide());
    try {
      const task = await api<LabelTask | null>("label-tasks/next", { method: "POST", body: { project: this.context.project.id, order: this.order } });
      if (!task) {
        this.task = null;
        this.renderSide();
        this.say("Nothing left to label in this project.");
        this.draw();
        return;
      }
      await this.open(task.id);
    } catch (error) {
      this.fail(error);
    }
  }

  async open(taskId: number): Promise<void> {
    const task = await api<LabelTask>(`label-tasks/${taskId}`);
    this.task = task;
    this.version = task.label?.version ?? 0;
    this.history.reset(fromStored(task.label));
    this.dirty = false;
    this.selected = null;
    this.suggestions = [];
    this.suggestionSource = null;
    this.draft = null;
    this.conflict = null;
    this.assistBox = null;
    this.assistPoints = [];
    let pyramid: Pyramid;
    try {
      pyramid = await api<Pyramid>(task.image.tiles.replace(/^\/api\/v1\//, ""));
    } catch {
      // No pyramid: the whole image is one tile.
      pyramid = { width: task.image.width, height: task.image.height, tile_size: Math.max(task.image.width, task.image.height), levels: 1 };
    }
    const tiles = task.image.tiles;
    const single = pyramid.levels === 1 && pyramid.tile_size >= Math.max(task.image.width, task.image.height);
    this.renderer = new Renderer(this.canvas, pyramid, (tile) => (single ? task.image.url : `${tiles}/${tile.level}/${tile.col}/${tile.row}`));
    this.renderer.onTile = () => this.draw();
    this.renderer.onSettle = () => this.draw();
    this.resize();
    this.fitView();
    this.renderSide();
    this.say("");
    void this.loadPrelabels();
  }

  private async skip(): Promise<void> {
    if (!this.task) return;
    await api(`label-tasks/${this.task.id}/skip`, { method: "POST" });
    this.dirty = false;
    await this.next();
  }

  private async submit(): Promise<void> {
    if (!this.task) return;
    const ok = await this.save(true);
    if (ok) {
      this.context.announce("Label submitted.");
      await this.next();
    }
  }

  private async copyPrevious(): Promise<void> {
    if (!this.task?.previous_task) return this.say("No previous image to copy from.");
    const previous = await api<LabelTask>(`label-tasks/${this.task.previous_task}`);
    if (!previous.label) return this.say("The previous image has no label.");
    const copied = fromStored(previous.label);
    const sameSize = previous.image.width === this.task.image.width && previous.image.height === this.task.image.height;
    const shapes = copied.shapes.filter((s) => sameSize || s.type !== "mask");
    this.edit({ ...copied, shapes: [...this.doc.shapes, ...shapes] });
    this.say(`Copied ${shapes.length} label(s) from the previous image.`);
  }

  private async loadPrelabels(): Promise<void> {
    if (!this.task) return;
    try {
      const prelabels = await api<Prelabels>(`label-tasks/${this.task.id}/prelabels`);
      this.suggestionSource = prelabels;
      this.suggestions = fromStored({ outcome: prelabels.outcome ?? "pass", defect_class: prelabels.defect_class, shapes: prelabels.shapes }).shapes;
      this.renderSide();
      this.draw();
    } catch {
      this.suggestionSource = null;
    }
  }

  private acceptSuggestions(): void {
    this.assistBox = null;
    this.assistPoints = [];
    if (!this.suggestions.length && !this.suggestionSource?.defect_class) return;
    const source = this.suggestionSource;
    this.edit({
      ...this.doc,
      defect_class: this.doc.defect_class ?? source?.defect_class ?? null,
      shapes: [...this.doc.shapes, ...this.suggestions],
    });
    this.suggestions = [];
    this.suggestionSource = null;
    this.renderSide();
  }

  private rejectSuggestions(): void {
    this.assistBox = null;
    this.assistPoints = [];
    this.suggestions = [];
    this.suggestionSource = null;
    this.renderSide();
    this.draw();
  }

  private async assist(box: [number, number, number, number]): Promise<void> {
    if (!this.task || this.activeClass === null) return;
    this.assistBox = box;
    try {
      const result = await api<{ shapes: Shape[] }>(`label-tasks/${this.task.id}/assist`, {
        method: "POST",
        body: {
          box: box.map((v) => Math.round(v)),
          defect_class: this.activeClass,
          ...(this.assistPoints.length ? { points: this.assistPoints } : {}),
        },
      });
      this.suggestions = fromStored({ outcome: "fail", defect_class: this.activeClass, shapes: result.shapes }).shapes;
      this.suggestionSource = { model_version: null, outcome: "fail", defect_class: this.activeClass, probabilities: null, shapes: result.shapes };
      this.renderSide();
      this.draw();
      this.say("Assist found a region: Y accepts it, X rejects it; click inside (Shift+click outside) to refine.");
    } catch (error) {
      this.fail(error);
    }
  }

  // --- editing and saving ----------------------------------------------------------------

  get doc(): LabelDoc {
    return this.history.current;
  }

  private edit(next: LabelDoc): void {
    this.history.push(next);
    this.changed();
  }

  private changed(): void {
    this.dirty = true;
    this.saveState.textContent = "Unsaved changes";
    if (this.saveTimer !== null) window.clearTimeout(this.saveTimer);
    this.saveTimer = window.setTimeout(() => void this.save(false), AUTOSAVE_MS);
    this.renderSide();
    this.draw();
  }

  private async saveNow(): Promise<void> {
    if (this.saveTimer !== null) window.clearTimeout(this.saveTimer);
    this.saveTimer = null;
    if (this.dirty && !this.conflict) await this.save(false);
    else if (this.saving) await this.saving;
  }

  /** PUT the document with the version it was based on. */
  async save(submit: boolean): Promise<boolean> {
    if (!this.task || this.conflict) return false;
    if (this.saving) await this.saving;
    const task = this.task;
    const doc = this.doc;
    let ok = false;
    this.saveState.textContent = "Saving…";
    const started = performance.now();
    this.saving = (async () => {
      try {
        const label = await api<StoredLabel>(`label-tasks/${task.id}/label`, {
          method: "PUT",
          body: { version: this.version, ...toBody(doc), submit },
        });
        this.version = label.version;
        if (this.doc === doc) this.dirty = false;
        this.lastSaveMs = performance.now() - started;
        this.saveState.textContent = `Saved, version ${label.version}${label.submitted ? " (submitted)" : ""}`;
        ok = true;
      } catch (error) {
        if (error instanceof ApiError && error.status === 409) {
          const body = error.body as { current?: StoredLabel } | null;
          this.conflict = { mine: doc, theirs: body?.current ?? ({ version: this.version } as StoredLabel) };
          this.saveState.textContent = "Not saved: someone else saved this image first";
          this.renderConflict();
        } else {
          this.saveState.textContent = "Not saved";
          this.fail(error);
        }
      }
    })();
    await this.saving;
    this.saving = null;
    return ok;
  }

  lastSaveMs = 0;

  private resolveConflict(choice: "theirs" | "mine" | "merge"): void {
    const conflict = this.conflict;
    if (!conflict) return;
    this.conflict = null;
    this.version = conflict.theirs.version;
    const theirs = fromStored(conflict.theirs.shapes ? conflict.theirs : null);
    const chosen = choice === "theirs" ? theirs : choice === "mine" ? conflict.mine : merge(conflict.mine, theirs);
    this.history.push(chosen);
    this.conflictBox.hidden = true;
    if (choice === "theirs") {
      this.dirty = false;
      this.saveState.textContent = `Showing the saved version ${this.version}`;
      this.renderSide();
      this.draw();
    } else {
      this.changed();
    }
  }

  private renderConflict(): void {
    const conflict = this.conflict;
    if (!conflict) return;
    replaceChildren(
      this.conflictBox,
      h("h2", {}, "Someone else saved this image"),
      h("p", {}, `Your work is kept here (${conflict.mine.shapes.length} shapes); version ${conflict.theirs.version} on the server has ${conflict.theirs.shapes?.length ?? 0}.`),
      h("button", { type: "button", id: "conflict-merge", on: { click: () => this.resolveConflict("merge") } }, "Merge both"),
      h("button", { type: "button", id: "conflict-mine", on: { click: () => this.resolveConflict("mine") } }, "Keep mine"),
      h("button", { type: "button", id: "conflict-theirs", on: { click: () => this.resolveConflict("theirs") } }, "Use theirs"),
    );
    this.conflictBox.hidden = false;
  }

  private undo(): void {
    if (this.history.undo()) this.changed();
  }

  private redo(): void {
    if (this.history.redo()) this.changed();
  }

  private deleteSelected(): void {
    const selected = this.selected;
    if (!selected) return;
    this.selected = null;
    this.edit({ ...this.doc, shapes: this.doc.shapes.filter((s) => s !== selected) });
  }

  private setImageClass(defectClass: number | null): void {
    this.edit({ ...this.doc, defect_class: defectClass, outcome: defectClass === null && !this.doc.shapes.length ? "pass" : "fail" });
  }

  // --- keyboard --------------------------------------------------------------------------

  private onKey(event: KeyboardEvent): void {
    const target = event.target as HTMLElement | null;
    if (target && ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName)) return;
    const key = event.key;
    const ctrl = event.ctrlKey || event.metaKey;
    let handled = true;
    if (ctrl && key.toLowerCase() === "z") event.shiftKey ? this.redo() : this.undo();
    else if (ctrl && key.toLowerCase() === "y") this.redo();
    else if (ctrl) handled = false;
    else if (TOOL_KEYS[key.toLowerCase()]) this.setTool(TOOL_KEYS[key.toLowerCase()]!);
    else if (/^[1-9]$/.test(key)) {
      const match = this.classes.find((dc) => dc.hotkey === Number(key));
      if (match) this.setClass(match.id);
    } else if (key === "g" || key === "G") this.setImageClass(null);
    else if (key === "f" || key === "F") this.setImageClass(this.activeClass);
    else if (key === "h" || key === "H") this.startHole();
    else if (key === "Delete" || key === "Backspace") this.deleteSelected();
    else if (key === "Escape") {
      this.draft = null;
      this.holeFor = null;
      this.selected = null;
      this.draw();
    } else if (key === "Enter") {
      if (this.draft && this.tool === "polygon") this.closePolygon();
      else void this.submit();
    } else if (key === "k" || key === "K") void this.skip();
    else if (key === "c" || key === "C") void this.copyPrevious();
    else if (key === "y" || key === "Y") this.acceptSuggestions();
    else if (key === "x" || key === "X") this.rejectSuggestions();
    else if (key === "0") this.fitView();
    else if (key === "+" || key === "=") this.zoomCentre(1.25);
    else if (key === "-") this.zoomCentre(0.8);
    else if (key === "[") this.brushRadius = Math.max(1, Math.round(this.brushRadius / 1.25));
    else if (key === "]") this.brushRadius = Math.min(500, Math.round(this.brushRadius * 1.25));
    else handled = false;
    if (handled) {
      event.preventDefault();
      this.renderTools();
    }
  }

  private setTool(tool: Tool): void {
    this.tool = tool;
    this.draft = null;
    this.renderTools();
    this.draw();
  }

  private setClass(id: number): void {
    this.activeClass = id;
    const selected = this.selected;
    if (selected && selected.defect_class !== id) {
      // Re-class the selected shape.
      const changed = { ...selected, defect_class: id } as EditorShape;
      this.selected = changed;
      this.edit({ ...this.doc, shapes: this.doc.shapes.map((s) => (s === selected ? changed : s)) });
    }
    this.renderTools();
  }

  private startHole(): void {
    if (this.selected?.type === "polygon") {
      this.holeFor = this.selected;
      this.tool = "polygon";
      this.draft = [];
      this.say("Draw the hole; Enter or a click on its first point closes it.");
    }
  }

  // --- pointer ---------------------------------------------------------------------------

  private point(event: PointerEvent | MouseEvent): Point {
    const box = this.canvas.getBoundingClientRect();
    return toImage(this.view, event.clientX - box.left, event.clientY - box.top);
  }

  private bindPointer(): void {
    let panning: { x: number; y: number; view: View } | null = null;
    let boxStart: Point | null = null;
    let dragging: { shape: Extract<EditorShape, { type: "polygon" }>; ring: number; index: number; before: LabelDoc } | null = null;
    let stroke: { layer: Extract<EditorShape, { type: "mask" }>; last: Point; before: LabelDoc } | null = null;
    let spaceDown = false;
    const onKeyDown = (e: KeyboardEvent) => {
      if (e.key === " " && e.target === this.canvas) {
        spaceDown = true;
        e.preventDefault();
      }
    };
    const onKeyUp = (e: KeyboardEvent) => {
      if (e.key === " ") spaceDown = false;
    };
    document.addEventListener("keydown", onKeyDown);
    document.addEventListener("keyup", onKeyUp);
    this.cleanup.push(() => {
      document.removeEventListener("keydown", onKeyDown);
      document.removeEventListener("keyup", onKeyUp);
    });
    this.canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    this.canvas.addEventListener(
      "wheel",
      (event) => {
        event.preventDefault();
        const box = this.canvas.getBoundingClientRect();
        this.view = zoomAt(this.view, event.deltaY < 0 ? 1.15 : 1 / 1.15, event.clientX - box.left, event.clientY - box.top);
        this.draw();
      },
      { passive: false },
    );
    this.canvas.addEventListener("pointerdown", (event) => {
      this.canvas.focus();
      this.canvas.setPointerCapture(event.pointerId);
      const p = this.point(event);
      if (event.button === 1 || event.button === 2 || spaceDown) {
        panning = { x: event.clientX, y: event.clientY, view: this.view };
        return;
      }
      if (!this.task) return;
      switch (this.tool) {
        case "select": {
          const handle = this.vertexAt(p);
          if (handle) {
            if (event.altKey) this.removeVertex(handle.shape, handle.ring, handle.index);
            else dragging = { ...handle, before: this.doc };
            return;
          }
          this.selected = this.shapeAt(p);
          if (!this.selected) panning = { x: event.clientX, y: event.clientY, view: this.view };
          this.renderSide();
          this.draw();
          return;
        }
        case "box":
        case "assist":
          boxStart = p;
          this.draft = [p, p];
          return;
        case "polygon": {
          this.draft ??= [];
          const first = this.draft[0];
          if (first && this.draft.length >= 3 && Math.hypot(first[0] - p[0], first[1] - p[1]) * this.view.scale < 8) {
            this.closePolygon();
            return;
          }
          this.draft.push(p);
          this.draw();
          return;
        }
        case "brush":
        case "eraser": {
          if (this.activeClass === null || !this.task) return;
          const value = this.tool === "brush" ? 1 : 0;
          let layer = this.doc.shapes.find((s): s is Extract<EditorShape, { type: "mask" }> => s.type === "mask" && s.defect_class === this.activeClass);
          const before = this.doc;
          // A stroke edits a copy of the mask, so undo gets the mask as it was.
          const copy = { type: "mask" as const, defect_class: this.activeClass, mask: layer ? { ...layer.mask, data: layer.mask.data.slice() } : emptyMask(this.task.image.width, this.task.image.height) };
          const shapes = layer ? this.doc.shapes.map((s) => (s === layer ? copy : s)) : [...this.doc.shapes, copy];
          this.history.push({ ...this.doc, shapes });
          layer = copy;
          paintStroke(layer.mask, p, p, this.brushRadius, value);
          this.renderer?.updateMask(layer.mask, p[0] - this.brushRadius, p[1] - this.brushRadius, p[0] + this.brushRadius, p[1] + this.brushRadius);
          stroke = { layer, last: p, before };
          this.draw();
          return;
        }
      }
    });
    this.canvas.addEventListener("pointermove", (event) => {
      const p = this.point(event);
      this.cursor = p;
      if (panning) {
        this.view = { ...panning.view, x: panning.view.x + event.clientX - panning.x, y: panning.view.y + event.clientY - panning.y };
        this.draw();
      } else if (boxStart && this.draft) {
        this.draft = [boxStart, [p[0], boxStart[1]], p, [boxStart[0], p[1]], boxStart];
        this.draw();
      } else if (dragging) {
        const ring = dragging.ring === 0 ? dragging.shape.points : dragging.shape.holes![dragging.ring - 1]!;
        ring[dragging.index] = this.clamp(p);
        this.renderer?.invalidate(dragging.shape);
        this.draw();
      } else if (stroke) {
        const value = this.tool === "brush" ? 1 : 0;
        paintStroke(stroke.layer.mask, stroke.last, p, this.brushRadius, value);
        const r = this.brushRadius;
        this.renderer?.updateMask(stroke.layer.mask, Math.min(p[0], stroke.last[0]) - r, Math.min(p[1], stroke.last[1]) - r, Math.max(p[0], stroke.last[0]) + r, Math.max(p[1], stroke.last[1]) + r);
        stroke.last = p;
        this.draw();
      } else if (this.tool === "polygon" && this.draft) this.draw();
    });
    this.canvas.addEventListener("pointerup", (event) => {
      const p = this.point(event);
      if (panning) panning = null;
      else if (boxStart) {
        const [x0, y0] = this.clamp(boxStart);
        const [x1, y1] = this.clamp(p);
        const box: [number, number, number, number] = [Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0)];
        boxStart = null;
        this.draft = null;
        if (this.tool === "assist" && this.assistBox && box[2] < 2 && box[3] < 2) {
          // A click (not a drag) after a box: a seed point that refines the assist.
          this.assistPoints.push({ x: Math.round(x1), y: Math.round(y1), positive: !event.shiftKey });
          void this.assist(this.assistBox);
        } else if (box[2] >= 2 && box[3] >= 2 && this.activeClass !== null) {
          if (this.tool === "assist") {
            this.assistPoints = [];
            void this.assist(box);
          } else this.edit({ ...this.doc, outcome: "fail", shapes: [...this.doc.shapes, { type: "box", x: box[0], y: box[1], width: box[2], height: box[3], defect_class: this.activeClass }] });
        }
        this.draw();
      } else if (dragging) {
        // The vertex was moved in place; record the edit as a new document for undo.
        const moved = { ...dragging.shape, points: dragging.shape.points.map((q) => [...q] as Point), holes: dragging.shape.holes?.map((r) => r.map((q) => [...q] as Point)) };
        const original = dragging.shape;
        this.history.reset(dragging.before);
        this.selected = moved;
        this.edit({ ...this.doc, shapes: this.doc.shapes.map((s) => (s === original ? moved : s)) });
        dragging = null;
      } else if (stroke) {
        stroke = null;
        this.changed();
      }
    });
    this.canvas.addEventListener("dblclick", (event) => {
      if (this.tool === "polygon" && this.draft) {
        this.closePolygon();
        return;
      }
      if (this.tool === "select" && this.selected?.type === "polygon") this.insertVertex(this.selected, this.point(event));
    });
  }

  private clamp([x, y]: Point): Point {
    const image = this.task?.image;
    return image ? [Math.min(image.width, Math.max(0, x)), Math.min(image.height, Math.max(0, y))] : [x, y];
  }

  private closePolygon(): void {
    const draft = this.draft;
    this.draft = null;
    if (!draft || draft.length < 3 || this.activeClass === null) return this.draw();
    const ring = draft.map((p) => this.clamp(p));
    const owner = this.holeFor;
    this.holeFor = null;
    if (owner) {
      const withHole = { ...owner, holes: [...(owner.holes ?? []), ring] };
      this.selected = withHole;
      this.edit({ ...this.doc, shapes: this.doc.shapes.map((s) => (s === owner ? withHole : s)) });
      return;
    }
    this.edit({ ...this.doc, outcome: "fail", shapes: [...this.doc.shapes, { type: "polygon", points: ring, defect_class: this.activeClass }] });
  }

  private shapeAt([x, y]: Point): EditorShape | null {
    for (let i = this.doc.shapes.length - 1; i >= 0; i--) {
      const shape = this.doc.shapes[i]!;
      if (shape.type === "box" && x >= shape.x && y >= shape.y && x <= shape.x + shape.width && y <= shape.y + shape.height) return shape;
      if (shape.type === "polygon" && pointInRings(x, y, [shape.points, ...(shape.holes ?? [])])) return shape;
      if (shape.type === "mask") {
        const mx = Math.floor(x);
        const my = Math.floor(y);
        if (mx >= 0 && my >= 0 && mx < shape.mask.width && my < shape.mask.height && shape.mask.data[my * shape.mask.width + mx]) return shape;
      }
    }
    return null;
  }

  private vertexAt(p: Point): { shape: Extract<EditorShape, { type: "polygon" }>; ring: number; index: number } | null {
    const shape = this.selected;
    if (shape?.type !== "polygon") return null;
    const rings = [shape.points, ...(shape.holes ?? [])];
    const reach = 6 / this.view.scale;
    for (let r = 0; r < rings.length; r++) {
      const index = rings[r]!.findIndex(([x, y]) => Math.abs(x - p[0]) <= reach && Math.abs(y - p[1]) <= reach);
      if (index >= 0) return { shape, ring: r, index };
    }
    return null;
  }

  private removeVertex(shape: Extract<EditorShape, { type: "polygon" }>, ring: number, index: number): void {
    const rings = [shape.points, ...(shape.holes ?? [])];
    if (rings[ring]!.length <= 3) return;
    const next = rings.map((r, i) => (i === ring ? r.filter((_, j) => j !== index) : r));
    const replaced = { ...shape, points: next[0]!, holes: next.slice(1) };
    this.selected = replaced;
    this.edit({ ...this.doc, shapes: this.doc.shapes.map((s) => (s === shape ? replaced : s)) });
  }

  private insertVertex(shape: Extract<EditorShape, { type: "polygon" }>, p: Point): void {
    // Insert on the nearest edge of the outer ring.
    let best = 0;
    let bestDistance = Infinity;
    shape.points.forEach(([ax, ay], i) => {
      const [bx, by] = shape.points[(i + 1) % shape.points.length]!;
      const t = Math.max(0, Math.min(1, ((p[0] - ax) * (bx - ax) + (p[1] - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2 || 1)));
      const d = Math.hypot(p[0] - (ax + t * (bx - ax)), p[1] - (ay + t * (by - ay)));
      if (d < bestDistance) {
        bestDistance = d;
        best = i + 1;
      }
    });
    const points = [...shape.points.slice(0, best), this.clamp(p), ...shape.points.slice(best)];
    const replaced = { ...shape, points };
    this.selected = replaced;
    this.edit({ ...this.doc, shapes: this.doc.shapes.map((s) => (s === shape ? replaced : s)) });
  }

  // --- view ------------------------------------------------------------------------------

  private resize(): void {
    const box = this.stage.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.max(1, Math.round(box.width * ratio));
    this.canvas.height = Math.max(1, Math.round(box.height * ratio));
    this.canvas.style.width = `${box.width}px`;
    this.canvas.style.height = `${box.height}px`;
    this.draw();
  }

  fitView(): void {
    if (!this.task) return;
    const box = this.stage.getBoundingClientRect();
    this.view = fit(this.task.image.width, this.task.image.height, box.width, box.height);
    this.draw();
  }

  private zoomCentre(factor: number): void {
    const box = this.stage.getBoundingClientRect();
    this.view = zoomAt(this.view, factor, box.width / 2, box.height / 2);
    this.draw();
  }

  /** Pan and zoom from scripts (the frame-time benchmark drives the view through this). */
  setView(view: View): void {
    this.view = view;
    this.drawNow();
  }

  get frameTimes(): number[] {
    return this.renderer?.frameTimes ?? [];
  }

  drawNow(): void {
    const image = this.task?.image;
    const pixels = (r: { x: number; y: number; width: number; height: number }) =>
      image ? { x: r.x * image.width, y: r.y * image.height, width: r.width * image.width, height: r.height * image.height } : r;
    const region = image?.region ? pixels(image.region) : null;
    const zones = (image?.ignore_zones ?? []).map(pixels);
    this.renderer?.draw(this.view, this.doc.shapes, this.palette, { selected: this.selected, suggestions: this.suggestions, draft: this.draft, cursor: this.cursor, region, zones });
  }

  private draw(): void {
    this.renderer?.request(() => this.drawNow());
  }

  private readonly palette = {
    colorOf: (id: number) => this.classes.find((dc) => dc.id === id)?.color ?? "#e4572e",
  };

  // --- side panels -----------------------------------------------------------------------

  private renderTools(): void {
    const tools: [Tool, string, string][] = [
      ["select", "Select / edit", "V"],
      ["box", "Box", "B"],
      ["polygon", "Polygon", "P"],
      ["brush", "Brush", "D"],
      ["eraser", "Eraser", "E"],
      ["assist", "Assist (box → mask)", "A"],
    ];
    const orderSelect = h(
      "select",
      { id: "queue-order", aria: { label: "Queue order" }, on: { change: (e) => void this.changeOrder((e.target as HTMLSelectElement).value) } },
      ...(["active", "random", "sequential"] as const).map((o) => {
        const option = h("option", { value: o }, o === "active" ? "Most informative first" : o === "random" ? "Random" : "In order");
        option.selected = o === this.order;
        return option;
      }),
    );
    replaceChildren(
      this.toolbar,
      h("h2", {}, "Tools"),
      ...tools.map(([tool, label, key]) =>
        h("button", { type: "button", data: { tool }, aria: { pressed: String(this.tool === tool) }, on: { click: () => this.setTool(tool) } }, `${label} (${key})`),
      ),
      h("p", { class: "hint" }, `Brush ${this.brushRadius} px ([ ])`),
      h("h2", {}, "Classes"),
      ...this.classes.map((dc) =>
        h(
          "button",
          { type: "button", class: "class-button", data: { defectClass: String(dc.id) }, aria: { pressed: String(this.activeClass === dc.id) }, on: { click: () => this.setClass(dc.id) } },
          h("span", { class: "swatch", attrs: { "aria-hidden": "true" }, data: { color: dc.color ?? "" } }),
          `${dc.name}${dc.hotkey ? ` (${dc.hotkey})` : ""}`,
        ),
      ),
      h("h2", {}, "Queue"),
      orderSelect,
      h("button", { type: "button", id: "submit-label", on: { click: () => void this.submit() } }, "Submit & next (Enter)"),
      h("button", { type: "button", id: "skip-task", on: { click: () => void this.skip() } }, "Skip (K)"),
      h("button", { type: "button", id: "copy-previous", on: { click: () => void this.copyPrevious() } }, "Copy previous (C)"),
      h("button", { type: "button", id: "undo", on: { click: () => this.undo() } }, "Undo (Ctrl+Z)"),
      h("button", { type: "button", id: "redo", on: { click: () => this.redo() } }, "Redo (Ctrl+Y)"),
    );
    // Colours are painted through the CSSOM (never as markup), after the class's own check.
    this.toolbar.querySelectorAll<HTMLElement>(".swatch").forEach((swatch) => {
      const color = swatch.dataset.color ?? "";
      if (/^#[0-9a-f]{6}$/i.test(color)) swatch.style.background = color;
    });
  }

  private async changeOrder(order: string): Promise<void> {
    this.order = order as typeof this.order;
    await this.next();
  }

  private renderSide(): void {
    const task = this.task;
    if (!task) {
      replaceChildren(
        this.side,
        h("h2", {}, "Labelling"),
        this.saveState,
        this.message,
        this.manages ? h("button", { type: "button", id: "next-disputed", on: { click: () => void this.nextDisputed() } }, `Disputed images (${this.labelling?.tasks.needs_adjudication ?? 0})`) : null,
        this.progressPanel(),
      );
      return;
    }
    const className = (id: number | null) => this.classes.find((dc) => dc.id === id)?.name ?? "good";
    const source = this.suggestionSource;
    replaceChildren(
      this.side,
      h("h2", { id: "task-title" }, `Image ${task.inspection} (task ${task.id})`),
      h("p", {}, `Why now: ${task.reasons.length ? task.reasons.join(", ") : "queue order"} · ${task.labels_submitted}/${task.labels_required} labels`),
      h("p", { id: "image-class" }, "Image: ", h("strong", {}, this.doc.defect_class === null && !this.doc.shapes.length ? "good (G)" : className(this.doc.defect_class ?? this.doc.shapes[0]?.defect_class ?? null))),
      task.image.region || task.image.ignore_zones?.length
        ? h("p", { class: "hint", id: "region-hint" }, "The models see only the bright part inside the dashed box (this station's inspection region), with the red zones blanked; marks outside it or in a zone do not train them.")
        : null,
      this.saveState,
      this.conflictBox,
      this.message,
      source && (this.suggestions.length || source.defect_class)
        ? h(
            "section",
            { class: "suggestion", id: "suggestions" },
            h("h3", {}, source.model_version ? `Suggested by ${source.model_version}` : "Suggested"),
            h("p", {}, `${source.defect_class !== null ? className(source.defect_class) : "good"}${source.probabilities ? ` · ${Object.entries(source.probabilities).map(([k, v]) => `${k} ${percent(v, 0)}`).join(", ")}` : ""} · ${this.suggestions.length} shape(s)`),
            h("button", { type: "button", id: "accept-suggestions", on: { click: () => this.acceptSuggestions() } }, "Accept (Y)"),
            h("button", { type: "button", id: "reject-suggestions", on: { click: () => this.rejectSuggestions() } }, "Reject (X)"),
          )
        : null,
      h("h3", {}, `Labels (${this.doc.shapes.length})`),
      h(
        "ol",
        { class: "shape-list", id: "shape-list" },
        ...this.doc.shapes.slice(0, 50).map((shape) =>
          h("li", { class: shape === this.selected ? "selected" : "" }, `${shape.type}: ${className(shape.defect_class)}`),
        ),
      ),
      this.doc.shapes.length > 50 ? h("p", {}, `… and ${this.doc.shapes.length - 50} more`) : null,
      h("button", { type: "button", id: "show-history", on: { click: () => void this.showHistory() } }, "History"),
      h("div", { id: "history" }),
      this.adjudicationPanel(task),
      this.progressPanel(),
    );
  }

  private adjudicationPanel(task: LabelTask): HTMLElement | null {
    if (!this.manages) return null;
    const labels = task.submitted_labels ?? [];
    return h(
      "section",
      { class: "adjudication", id: "adjudication", aria: { label: "Adjudication" } },
      h("h3", {}, "Adjudication"),
      task.status === "needs_adjudication"
        ? h(
            "div",
            {},
            h("p", {}, "The annotators disagree. Load a label, correct it, then adjudicate."),
            ...labels.map((label) =>
              h(
                "button",
                { type: "button", data: { author: label.author }, on: { click: () => this.loadSubmitted(label) } },
                `${label.author}: ${this.classes.find((dc) => dc.id === label.defect_class)?.name ?? "good"}, ${label.shapes.length} shape(s)`,
              ),
            ),
            h("button", { type: "button", id: "adjudicate", on: { click: () => void this.adjudicate() } }, "Adjudicate (final label)"),
          )
        : null,
      h("button", { type: "button", id: "next-disputed", on: { click: () => void this.nextDisputed() } }, `Disputed images (${this.labelling?.tasks.needs_adjudication ?? 0})`),
    );
  }

  private progressPanel(): HTMLElement | null {
    const stats = this.labelling;
    if (!stats) return null;
    const mine = stats.annotators.find((a) => a.username === this.context.session.me.username);
    const agreement = stats.agreement;
    return h(
      "section",
      { class: "progress", id: "labelling-progress", aria: { label: "Progress" } },
      h("h3", {}, "Progress"),
      h("p", {}, `You: ${mine?.submitted ?? 0} submitted, ${mine?.skipped ?? 0} skipped`),
      h("p", {}, Object.entries(stats.tasks).map(([status, n]) => `${status.replace("_", " ")} ${n}`).join(" · ")),
      h(
        "p",
        { id: "agreement" },
        agreement.tasks_compared
          ? `Agreement over ${agreement.tasks_compared} images: class kappa ${agreement.class_kappa === null ? "–" : agreement.class_kappa.toFixed(2)}, shape IoU ${percent(agreement.mean_shape_iou, 0)}`
          : "Agreement: no image has two labels yet",
      ),
      this.manages && stats.annotators.length > 1
        ? h("ol", { class: "history" }, ...stats.annotators.map((a) => h("li", {}, `${a.username}: ${a.submitted} submitted`)))
        : null,
    );
  }

  private async showHistory(): Promise<void> {
    if (!this.task) return;
    const revisions = await api<Revision[] | { results: Revision[] }>(`label-tasks/${this.task.id}/history`);
    const rows = Array.isArray(revisions) ? revisions : revisions.results;
    const box = document.getElementById("history");
    if (box)
      replaceChildren(
        box,
        h("ol", { class: "history" }, ...rows.map((r) => h("li", {}, `v${r.version} · ${r.author} · ${r.shapes_count} shapes${r.submitted ? " · submitted" : ""} · ${new Date(r.created_at).toLocaleString()}`))),
      );
  }

  private say(text: string): void {
    this.message.textContent = text;
  }

  private fail(error: unknown): void {
    this.say(error instanceof ApiError ? `${error.detail} (${error.status})` : String(error));
  }
}
