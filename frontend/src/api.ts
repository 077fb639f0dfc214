// A typed client for Loupe's public REST API (/api/v1): the same endpoints that stations,
// scripts and the docs at /api/docs/ use. Session cookie plus the CSRF header for writes.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string | null,
    readonly detail: string,
    readonly body: unknown = null,
  ) {
    super(detail);
  }
}

export interface Page<T> {
  results: T[];
  next: string | null;
  previous: string | null;
}

function cookie(name: string): string | null {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

async function csrfToken(): Promise<string> {
  let token = cookie("csrftoken");
  if (!token) {
    await fetch("/api/v1/auth/csrf", { credentials: "same-origin" });
    token = cookie("csrftoken");
  }
  return token ?? "";
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export function withQuery(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}${path.includes("?") ? "&" : "?"}${text}` : path;
}

/** The reason a request failed, in words a person can act on. */
export function reasonOf(body: unknown, status: number): { code: string | null; detail: string } {
  if (body && typeof body === "object") {
    const record = body as Record<string, unknown>;
    const code = typeof record.code === "string" ? record.code : null;
    if (typeof record.detail === "string") {
      // A validation failure says which fields were refused and why: show that, not only "Invalid input."
      const errors = record.errors && typeof record.errors === "object" ? Object.entries(record.errors as Record<string, unknown>) : [];
      if (!errors.length) return { code, detail: record.detail };
      const reasons = errors.map(([key, value]) => `${key}: ${Array.isArray(value) ? value.join(" ") : String(value)}`);
      return { code, detail: `${record.detail} ${reasons.join("; ")}` };
    }
    const fields = Object.entries(record)
      .filter(([key]) => key !== "code")
      .map(([key, value]) => `${key}: ${Array.isArray(value) ? value.join(" ") : String(value)}`);
    if (fields.length) return { code, detail: fields.join("; ") };
  }
  return { code: null, detail: `Request failed (${status}).` };
}

export async function api<T>(
  path: string,
  options: { method?: string; body?: unknown; query?: Query } = {},
): Promise<T> {
  const method = options.method ?? "GET";
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRFToken"] = await csrfToken();
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(withQuery(`/api/v1/${path}`, options.query), {
    method,
    headers,
    credentials: "same-origin",
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 204) return null as T;
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const { code, detail } = reasonOf(body, response.status);
    throw new ApiError(response.status, code, detail, body);
  }
  return body as T;
}

// --- the shapes this front end reads --------------------------------------------------------

export type Role = "annotator" | "reviewer" | "manager" | "admin";

export interface Me {
  id: number;
  username: string;
  projects: { id: number; name: string; role: Role }[];
}

export interface DefectClass {
  id: number;
  name: string;
  hotkey: number | null;
  color?: string;
}

export interface Project {
  id: number;
  name: string;
  description: string;
  good_class_name: string;
  target_escape_rate: number;
  /** IANA zone of the plant's clock: dashboard days and shifts follow it. */
  time_zone?: string;
  shifts?: { name: string; start: number }[];
  defect_classes: DefectClass[];
}

export interface PartView {
  inspection: number;
  station: string;
  url: string;
  heatmap: string | null;
  mask: string | null;
  flagged: boolean;
  /** The inspection region the models looked at, as fractions of the image; null: all of it. */
  region?: { x: number; y: number; width: number; height: number } | null;
  /** Ignore zones blanked before the models looked (fractions of the image). */
  ignore_zones?: { x: number; y: number; width: number; height: number }[];
  width?: number;
  height?: number;
}

export interface ReviewItem {
  id: number;
  project: number;
  status: "open" | "claimed" | "decided" | "expired" | string;
  reason: string;
  model_version: string;
  part: { id: number; serial: string; sku: string };
  station: { id: number; name: string; line: string } | null;
  image: { inspection: number; width: number; height: number; url: string } | null;
  scores: {
    probabilities?: Record<string, number>;
    defect_probability?: number;
    anomaly_score?: number;
    anomaly_ratio?: number;
    defect_score?: number;
    predicted_class?: string | null;
    flags?: Record<string, boolean>;
  };
  overlays: { heatmap: string | null; mask: string | null };
  views?: PartView[];
  created_at: string;
  sla_due_at: string;
  claimed_by: number | null;
  lease_expires_at: string | null;
  decided_at: string | null;
}
