// Stations, their inspection regions and their tokens. A region is the part of the camera's frame the
// models look at (fixtures, conveyor and background outside it cause no false alarms). A
// project admin draws it over the station's latest image, or types it in per cent; others
// see it. Parts inspected after saving are cut to it; models trained before saw another view,
// so the station's parts go to people (reason region_changed) until retrained models serve.

import { api, ApiError, type Page as ApiPage } from "../api";
import type { PageContext } from "../context";
import { ago, h, replaceChildren } from "../dom";
import {
  describeModelsView,
  describeRegion,
  regionFromDrag,
  regionFromPercent,
  regionPercent,
  type ModelsView,
  type Region,
} from "./region";

interface Station {
  id: number;
  project: number;
  line: string;
  name: string;
  is_active: boolean;
  inspection_region: Region | null;
  ignore_zones?: Region[];
  models_view?: ModelsView;
}

interface InspectionRow {
  id: number;
}

export function stationsSection(context: PageContext): HTMLElement {
  const list = h("div", { class: "stations", id: "stations" }, h("p", { class: "hint" }, "Loading stations…"));
  const admin = context.session.role === "admin";
  const lineName = h("input", { id: "new-station-line", attrs: { maxlength: "120" } });
  const stationName = h("input", { id: "new-station-name", attrs: { maxlength: "120" } });
  const addMessage = h("p", { class: "message", role: "alert", id: "new-station-message" });
  const addForm = admin
    ? h(
        "form",
        {
          class: "filters",
          id: "new-station",
          on: {
            submit: async (event) => {
              event.preventDefault();
              try {
                const created = await api<Station>("stations", {
                  method: "POST",
                  body: { project: context.project.id, line: lineName.value, name: stationName.value },
                });
                if (!list.querySelector(`[data-station="${created.id}"]`)) {
                  list.querySelector(".hint")?.remove();
                  list.append(stationCard(context, created));
                }
                stationName.value = "";
                addMessage.textContent = "";
                context.announce(`Station ${created.line} / ${created.name} added.`);
              } catch (error) {
                addMessage.textContent = error instanceof ApiError ? error.detail : String(error);
              }
            },
          },
        },
        h("label", { for: "new-station-line" }, "Line", lineName),
        h("label", { for: "new-station-name" }, "New station", stationName),
        h("button", { type: "submit" }, "Add station"),
        addMessage,
      )
    : null;
  const section = h(
    "section",
    { aria: { labelledby: "stations-heading" } },
    h("h2", { id: "stations-heading" }, "Stations: inspection regions and tokens"),
    h(
      "p",
      { class: "hint" },
      "The models look only inside a station's region; fixtures and background outside it raise no alarms. Drag over the image to draw it. After a change, this station's parts go to people until models trained with the new region are deployed.",
    ),
    addForm,
    list,
  );
  void (async () => {
    try {
      const page = await api<ApiPage<Station>>("stations", { query: { project: context.project.id, page_size: 100 } });
      replaceChildren(list, ...(page.results.length ? page.results.map((s) => stationCard(context, s)) : [h("p", { class: "hint" }, "No stations yet.")]));
    } catch (error) {
      replaceChildren(list, h("p", { class: "message", role: "alert" }, error instanceof ApiError ? error.detail : String(error)));
    }
  })();
  return section;
}

function stationCard(context: PageContext, station: Station): HTMLElement {
  const editable = context.session.role === "admin";
  const prefix = `station-${station.id}`;
  let region = station.inspection_region;
  let zones: Region[] = [...(station.ignore_zones ?? [])];
  let pendingZones: Region[] = [...zones];
  const box = h("div", { class: "region-box", id: `${prefix}-box`, hidden: true });
  const zoneLayer = h("div", { class: "zone-layer", id: `${prefix}-zone-layer` });
  const picture = h("img", { alt: `Latest image from ${station.line} / ${station.name}` });
  const frame = h("div", { class: "region-frame", id: `${prefix}-frame`, hidden: true }, picture, box, zoneLayer);
  const zoneList = h("ul", { class: "zones", id: `${prefix}-zones` });
  const drawMode = h(
    "select",
    { id: `${prefix}-draw` },
    h("option", { value: "region" }, "the inspection region"),
    h("option", { value: "zone" }, "an ignore zone (date code, label)"),
  );
  drawMode.disabled = !editable;
  const noImage = h("p", { class: "hint" }, "No image from this station yet: type the region in per cent.");
  const status = h("p", { class: "hint", id: `${prefix}-status`, role: "status" });
  // Whether the deployed models decide this station's parts through its view (a new view
  // sends them to people until calibrated on it or retrained).
  const modelsView = h("p", { class: "hint models-view", id: `${prefix}-models` });
  const showModelsView = (view: ModelsView | undefined) => {
    modelsView.textContent = describeModelsView(view);
    modelsView.hidden = !modelsView.textContent;
  };
  showModelsView(station.models_view);
  const message = h("p", { class: "message", role: "alert", id: `${prefix}-message` });
  const fields = {
    x: h("input", { type: "number", id: `${prefix}-x`, attrs: { min: "0", max: "100", step: "0.1" } }),
    y: h("input", { type: "number", id: `${prefix}-y`, attrs: { min: "0", max: "100", step: "0.1" } }),
    width: h("input", { type: "number", id: `${prefix}-width`, attrs: { min: "2", max: "100", step: "0.1" } }),
    height: h("input", { type: "number", id: `${prefix}-height`, attrs: { min: "2", max: "100", step: "0.1" } }),
  };
  for (const input of Object.values(fields)) input.disabled = !editable;

  const show = (shown: Region | null) => {
    const values = regionPercent(shown);
    fields.x.value = values.x;
    fields.y.value = values.y;
    fields.width.value = values.width;
    fields.height.value = values.height;
    box.hidden = shown === null;
    const r = shown ?? { x: 0, y: 0, width: 1, height: 1 };
    box.style.left = `${r.x * 100}%`;
    box.style.top = `${r.y * 100}%`;
    box.style.width = `${r.width * 100}%`;
    box.style.height = `${r.height * 100}%`;
  };
  const saved = () => {
    const blanked = zones.length ? `, with ${zones.length} ignore zone${zones.length > 1 ? "s" : ""} blanked` : "";
    status.textContent = `The models look at ${describeRegion(region)}${blanked}.`;
  };
  const zoneBox = (zone: Region, draft = false) => {
    const node = h("div", { class: draft ? "zone-box draft" : "zone-box" });
    node.style.left = `${zone.x * 100}%`;
    node.style.top = `${zone.y * 100}%`;
    node.style.width = `${zone.width * 100}%`;
    node.style.height = `${zone.height * 100}%`;
    return node;
  };
  const showZones = (draft: Region | null = null) => {
    replaceChildren(zoneLayer, ...pendingZones.map((zone) => zoneBox(zone)), draft ? zoneBox(draft, true) : null);
    replaceChildren(
      zoneList,
      ...pendingZones.map((zone, index) =>
        h(
          "li",
          {},
          `Ignore zone ${index + 1}: ${describeRegion(zone).replace(/^the box /, "")} `,
          editable
            ? h(
                "button",
                {
                  type: "button",
                  class: "remove-zone",
                  on: {
                    click: () => {
                      pendingZones = pendingZones.filter((_, i) => i !== index);
                      showZones();
                      status.textContent = "Zone removed. Save to use it.";
                    },
                  },
                },
                "Remove",
              )
            : null,
        ),
      ),
    );
  };

  async function save(next: Region | null) {
    try {
      const updated = await api<Station>(`stations/${station.id}`, {
        method: "PATCH",
        body: { inspection_region: next, ignore_zones: pendingZones },
      });
      region = updated.inspection_region;
      zones = [...(updated.ignore_zones ?? [])];
      pendingZones = [...zones];
      show(region);
      showZones();
      saved();
      showModelsView(updated.models_view);
      message.textContent = "";
      context.announce(`Region of ${station.name} saved.`);
    } catch (error) {
      message.textContent = error instanceof ApiError ? error.detail : String(error);
    }
  }

  // Drawing: pointer positions as fractions of the shown image.
  let start: { x: number; y: number } | null = null;
  const at = (event: PointerEvent) => {
    const rect = frame.getBoundingClientRect();
    return { x: (event.clientX - rect.left) / rect.width, y: (event.clientY - rect.top) / rect.height };
  };
  if (editable) {
    frame.addEventListener("pointerdown", (event) => {
      start = at(event);
      frame.setPointerCapture(event.pointerId);
      event.preventDefault();
    });
    frame.addEventListener("pointermove", (event) => {
      if (start === null) return;
      const drawn = regionFromDrag(start, at(event));
      if (!drawn) return;
      if (drawMode.value === "zone") showZones(drawn);
      else show(drawn);
    });
    frame.addEventListener("pointerup", (event) => {
      if (start === null) return;
      const drawn = regionFromDrag(start, at(event));
      start = null;
      if (drawMode.value === "zone") {
        if (drawn && pendingZones.length < 16) {
          pendingZones = [...pendingZones, drawn];
          status.textContent = `Ignore zone added: ${describeRegion(drawn)}. Save to use it.`;
        }
        showZones();
      } else if (drawn) {
        show(drawn);
        status.textContent = `Drawn: ${describeRegion(drawn)}. Save to use it.`;
      } else {
        show(region);
      }
    });
  }

  const form = h(
    "form",
    {
      class: "filters",
      id: `${prefix}-form`,
      on: {
        submit: (event) => {
          event.preventDefault();
          const typed = regionFromPercent({ x: fields.x.value, y: fields.y.value, width: fields.width.value, height: fields.height.value });
          if (typeof typed === "string") {
            message.textContent = typed;
            return;
          }
          const whole = typed.x === 0 && typed.y === 0 && typed.width === 1 && typed.height === 1;
          void save(whole ? null : typed);
        },
      },
    },
    h("label", { for: fields.x.id }, "From left (%)", fields.x),
    h("label", { for: fields.y.id }, "From top (%)", fields.y),
    h("label", { for: fields.width.id }, "Width (%)", fields.width),
    h("label", { for: fields.height.id }, "Height (%)", fields.height),
    h("label", { for: drawMode.id }, "Dragging draws", drawMode),
    editable ? h("button", { type: "submit", id: `${prefix}-save` }, "Save region and zones") : null,
    editable
      ? h("button", { type: "button", id: `${prefix}-clear`, on: { click: () => void save(null) } }, "Whole frame")
      : h("p", { class: "hint" }, "Project admins set regions."),
  );
  const preview = () => {
    const typed = regionFromPercent({ x: fields.x.value, y: fields.y.value, width: fields.width.value, height: fields.height.value });
    if (typeof typed !== "string") show(typed);
  };
  for (const input of Object.values(fields)) input.addEventListener("input", preview);

  show(region);
  showZones();
  saved();
  void (async () => {
    try {
      const latest = await api<ApiPage<InspectionRow>>("inspections", { query: { station: station.id, page_size: 1 } });
      const row = latest.results[0];
      if (!row) {
        frame.replaceWith(noImage);
        return;
      }
      picture.src = `/api/v1/inspections/${row.id}/image`;
      frame.hidden = false;
    } catch {
      frame.replaceWith(noImage);
    }
  })();

  return h(
    "article",
    { class: "station-card", data: { station: String(station.id) } },
    h("h3", {}, `${station.line} / ${station.name}`, station.is_active ? "" : " (deactivated)"),
    frame,
    status,
    modelsView,
    zoneList,
    message,
    form,
    editable ? tokensPanel(context, station) : null,
  );
}

interface StationToken {
  id: number;
  station: number;
  prefix: string;
  label: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
}

/** A station's tokens (admins): issue one (shown once, Loupe keeps only a hash), revoke one. */
function tokensPanel(context: PageContext, station: Station): HTMLElement {
  const prefix = `station-${station.id}`;
  const rows = h("tbody", { id: `${prefix}-tokens` });
  const issued = h("div", { id: `${prefix}-issued`, class: "issued-token", hidden: true });
  const message = h("p", { class: "message", role: "alert", id: `${prefix}-token-message` });
  const description = h("input", { id: `${prefix}-token-label`, attrs: { maxlength: "120", placeholder: "e.g. camera serial" } });
  const ttl = h("input", { id: `${prefix}-token-days`, type: "number", attrs: { min: "1", max: "3650", placeholder: "never" } });
  const fail = (error: unknown) => {
    message.textContent = error instanceof ApiError ? error.detail : String(error);
  };

  const row = (token: StationToken): HTMLElement => {
    const state = token.revoked_at ? "revoked" : token.expires_at && Date.parse(token.expires_at) < Date.now() ? "expired" : "active";
    return h(
      "tr",
      { data: { token: String(token.id) } },
      h("td", {}, h("code", {}, token.prefix)),
      h("td", {}, token.label || "–"),
      h("td", {}, token.last_used_at ? `used ${ago(token.last_used_at)}` : "never used"),
      h("td", {}, state === "active" && token.expires_at ? `expires ${new Date(token.expires_at).toLocaleDateString()}` : state),
      h(
        "td",
        {},
        state === "active"
          ? h(
              "button",
              {
                type: "button",
                class: "revoke-token",
                on: {
                  click: async () => {
                    try {
                      await api(`station-tokens/${token.id}/revoke`, { method: "POST" });
                      message.textContent = "";
                      context.announce(`Token ${token.prefix} revoked.`);
                      await load();
                    } catch (error) {
                      fail(error);
                    }
                  },
                },
              },
              "Revoke",
            )
          : null,
      ),
    );
  };

  async function load() {
    const page = await api<ApiPage<StationToken>>("station-tokens", { query: { station: station.id, page_size: 100 } });
    replaceChildren(rows, ...page.results.map(row));
  }

  const form = h(
    "form",
    {
      class: "filters",
      id: `${prefix}-token-form`,
      on: {
        submit: async (event) => {
          event.preventDefault();
          try {
            const body: Record<string, unknown> = { description: description.value };
            if (ttl.value.trim()) body.ttl_days = Number(ttl.value);
            const token = await api<StationToken & { token: string }>(`stations/${station.id}/tokens`, { method: "POST", body });
            replaceChildren(
              issued,
              h("p", {}, "Shown once: give it to the station now (", h("code", {}, "Authorization: Station <token>"), "). Loupe keeps only a hash."),
              h("code", { class: "token", id: `${prefix}-new-token` }, token.token),
            );
            issued.hidden = false;
            description.value = "";
            message.textContent = "";
            await load();
          } catch (error) {
            fail(error);
          }
        },
      },
    },
    h("label", { for: description.id }, "Token description", description),
    h("label", { for: ttl.id }, "Valid for (days)", ttl),
    h("button", { type: "submit", id: `${prefix}-issue-token` }, "Issue token"),
  );
  void load().catch(fail);
  return h(
    "details",
    { class: "tokens" },
    h("summary", {}, "Tokens"),
    h(
      "table",
      { class: "data" },
      h("caption", {}, `Tokens of ${station.line} / ${station.name}`),
      h("thead", {}, h("tr", {}, ...["Prefix", "Description", "Last used", "State", ""].map((c) => h("th", { attrs: { scope: "col" } }, c)))),
      rows,
    ),
    issued,
    message,
    form,
  );
}
