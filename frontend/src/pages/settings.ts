// Project settings for managers: defect classes (name, colour, hotkey) and how labelling
// works (labels per image, which labels train), how long images of parts only the models
// decided are kept, the plant's clock, and each station's inspection region. Names are any
// text and shown as text.

import { api, ApiError, type DefectClass } from "../api";
import type { Page, PageContext } from "../context";
import { h, replaceChildren } from "../dom";
import { formatShifts, parseShifts, type Shift } from "../plantTime";
import { stationsSection } from "../settings/stations";

interface LabellingSettings {
  labels_per_image: number;
  training_labels: "single" | "adjudicated";
  image_retention_days: number | null;
  retrain_after_labels: number;
  promote_when_better: boolean;
  time_zone: string;
  shifts: Shift[];
}

/** The IANA zones this browser knows (for the picker), with the current one first if unknown. */
function timeZones(current: string): string[] {
  const known = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  return [...new Set([current, "UTC", ...known])];
}

export const settingsPage: Page = (context: PageContext) => {
  const project = context.project as typeof context.project & LabellingSettings;
  const message = h("p", { class: "message", role: "alert", id: "settings-message" });
  const rows = h("tbody", { id: "classes" });

  const fail = (error: unknown) => {
    message.textContent = error instanceof ApiError ? error.detail : String(error);
  };

  function classRow(dc: DefectClass): HTMLElement {
    const name = h("input", { value: dc.name, aria: { label: `Name of class ${dc.id}` }, attrs: { maxlength: "60" } });
    const color = h("input", { type: "color", value: dc.color ?? "#e4572e", aria: { label: `Colour of class ${dc.id}` } });
    const hotkey = h("input", { type: "number", value: dc.hotkey ? String(dc.hotkey) : "", aria: { label: `Hotkey of class ${dc.id}` }, attrs: { min: "1", max: "9" } });
    return h(
      "tr",
      { data: { defectClass: String(dc.id) } },
      h("td", {}, name),
      h("td", {}, color),
      h("td", {}, hotkey),
      h(
        "td",
        {},
        h(
          "button",
          {
            type: "button",
            on: {
              click: async () => {
                try {
                  await api(`defect-classes/${dc.id}`, {
                    method: "PATCH",
                    body: { name: name.value, color: color.value, hotkey: hotkey.value ? Number(hotkey.value) : null },
                  });
                  message.textContent = "";
                  context.announce(`Class ${name.value} saved.`);
                } catch (error) {
                  fail(error);
                }
              },
            },
          },
          "Save",
        ),
      ),
    );
  }

  const newName = h("input", { id: "new-class-name", attrs: { maxlength: "60" } });
  const newColor = h("input", { id: "new-class-color", type: "color", value: "#1f5fa8" });
  const newHotkey = h("input", { id: "new-class-hotkey", type: "number", attrs: { min: "1", max: "9" } });
  const perImage = h("input", { id: "labels-per-image", type: "number", value: String(project.labels_per_image ?? 1), attrs: { min: "1", max: "5" } });
  const training = h(
    "select",
    { id: "training-labels" },
    ...(["single", "adjudicated"] as const).map((value) => {
      const option = h("option", { value }, value === "single" ? "Every agreed label trains" : "Only adjudicated labels train");
      option.selected = project.training_labels === value;
      return option;
    }),
  );

  const retention = h("input", {
    id: "image-retention-days",
    type: "number",
    value: project.image_retention_days == null ? "" : String(project.image_retention_days),
    attrs: { min: "1", placeholder: "keep forever" },
  });

  const retrainAfter = h("input", {
    id: "retrain-after-labels",
    type: "number",
    value: String(project.retrain_after_labels ?? 0),
    attrs: { min: "0", step: "1" },
  });
  const promote = h("input", { id: "promote-when-better", type: "checkbox" });
  promote.checked = Boolean(project.promote_when_better);

  const timeZone = h(
    "select",
    { id: "plant-time-zone" },
    ...timeZones(project.time_zone ?? "UTC").map((zone) => {
      const option = h("option", { value: zone }, zone);
      option.selected = zone === (project.time_zone ?? "UTC");
      return option;
    }),
  );
  const shifts = h("input", { id: "plant-shifts", value: formatShifts(project.shifts ?? []), attrs: { size: "30" } });

  replaceChildren(
    context.root,
    h(
      "div",
      { class: "settings" },
      h("h1", {}, "Settings: ", project.name),
      message,
      h(
        "table",
        { class: "data" },
        h("caption", {}, "Defect classes"),
        h("thead", {}, h("tr", {}, ...["Name", "Colour", "Hotkey", ""].map((c) => h("th", { attrs: { scope: "col" } }, c)))),
        rows,
      ),
      h(
        "form",
        {
          class: "filters",
          id: "new-class",
          on: {
            submit: async (event) => {
              event.preventDefault();
              try {
                const created = await api<DefectClass>("defect-classes", {
                  method: "POST",
                  body: { project: project.id, name: newName.value, color: newColor.value, hotkey: newHotkey.value ? Number(newHotkey.value) : null },
                });
                rows.append(classRow(created));
                newName.value = "";
                newHotkey.value = "";
                message.textContent = "";
              } catch (error) {
                fail(error);
              }
            },
          },
        },
        h("label", { for: "new-class-name" }, "New class", newName),
        h("label", { for: "new-class-color" }, "Colour", newColor),
        h("label", { for: "new-class-hotkey" }, "Hotkey", newHotkey),
        h("button", { type: "submit" }, "Add class"),
      ),
      h(
        "form",
        {
          class: "filters",
          id: "labelling-settings",
          on: {
            submit: async (event) => {
              event.preventDefault();
              try {
                await api(`projects/${project.id}`, {
                  method: "PATCH",
                  body: { labels_per_image: Number(perImage.value), training_labels: training.value },
                });
                message.textContent = "";
                context.announce("Labelling settings saved.");
              } catch (error) {
                fail(error);
              }
            },
          },
        },
        h("label", { for: "labels-per-image" }, "Labels per image", perImage),
        h("label", { for: "training-labels" }, "Training data", training),
        h("button", { type: "submit" }, "Save labelling settings"),
      ),
      h(
        "form",
        {
          class: "filters",
          id: "retention-settings",
          on: {
            submit: async (event) => {
              event.preventDefault();
              const days = retention.value.trim() === "" ? null : Number(retention.value);
              try {
                await api(`projects/${project.id}`, { method: "PATCH", body: { image_retention_days: days } });
                message.textContent = "";
                context.announce(days === null ? "Images are kept forever." : `Images of parts only the models decided are kept ${days} days.`);
              } catch (error) {
                fail(error);
              }
            },
          },
        },
        h("label", { for: "image-retention-days" }, "Keep images of parts only the models decided (days)", retention),
        h("button", { type: "submit" }, "Save retention"),
        h("p", { class: "hint" }, "Parts people decided, reviewed or labelled, golden parts and training images are always kept; records and the audit trail are never removed."),
      ),
      h(
        "form",
        {
          class: "filters",
          id: "retraining-settings",
          on: {
            submit: async (event) => {
              event.preventDefault();
              const after = Number(retrainAfter.value || "0");
              try {
                await api(`projects/${project.id}`, {
                  method: "PATCH",
                  body: { retrain_after_labels: after, promote_when_better: promote.checked },
                });
                message.textContent = "";
                context.announce(
                  after === 0
                    ? "Models are retrained by hand only."
                    : `Each deployed model is retrained after ${after} new human labels${promote.checked ? "; a better one is deployed by itself" : ""}.`,
                );
              } catch (error) {
                fail(error);
              }
            },
          },
        },
        h("label", { for: "retrain-after-labels" }, "Retrain after this many new human labels (0: by hand)", retrainAfter),
        h("label", { for: "promote-when-better" }, promote, " Deploy a retrained model by itself when it beats the one serving"),
        h("button", { type: "submit" }, "Save retraining"),
        h("p", { class: "hint" }, "Every trained model is first scored beside the one serving on the latest audited parts; only one that sends fewer parts to people at your escape target is deployed by itself."),
      ),
      h(
        "form",
        {
          class: "filters",
          id: "plant-clock",
          on: {
            submit: async (event) => {
              event.preventDefault();
              const parsed = parseShifts(shifts.value);
              if (typeof parsed === "string") {
                message.textContent = parsed;
                return;
              }
              try {
                const saved = await api<LabellingSettings>(`projects/${project.id}`, { method: "PATCH", body: { time_zone: timeZone.value, shifts: parsed } });
                project.time_zone = saved.time_zone;
                project.shifts = saved.shifts;
                shifts.value = formatShifts(saved.shifts);
                message.textContent = "";
                context.announce(`Dashboards count days and shifts in ${saved.time_zone}.`);
              } catch (error) {
                fail(error);
              }
            },
          },
        },
        h("label", { for: "plant-time-zone" }, "Plant time zone", timeZone),
        h("label", { for: "plant-shifts" }, "Shifts (name and starting hour)", shifts),
        h("button", { type: "submit" }, "Save plant clock"),
        h("p", { class: "hint" }, "Days and shifts on the dashboards follow the plant's clock, daylight saving time included; saving re-counts past days."),
      ),
      stationsSection(context),
    ),
  );
  for (const dc of project.defect_classes) rows.append(classRow(dc));
  return () => undefined;
};
