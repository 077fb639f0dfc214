// Loupe's single-page front end: sign-in, project switcher, role-based navigation, and the
// review console, dashboards and training pages. Data comes only from /api/v1 and /ws/review/.

import "./style.css";
import { api, ApiError, type Me, type Project } from "./api";
import type { Page } from "./context";
import { h, replaceChildren } from "./dom";
import { LiveFeed } from "./live";
import { mountLogin } from "./pages/login";
import { Session, sectionsFor } from "./session";

const pages: Record<string, () => Promise<Page>> = {
  review: async () => (await import("./pages/review")).reviewPage,
  annotate: async () => (await import("./pages/annotate")).annotatePage,
  dashboard: async () => (await import("./pages/dashboard")).dashboardPage,
  training: async () => (await import("./pages/training")).trainingPage,
  settings: async () => (await import("./pages/settings")).settingsPage,
};

const app = document.getElementById("app") as HTMLElement;
let teardown: () => void = () => undefined;
let live: LiveFeed | null = null;
let unwatchLive: () => void = () => undefined;

async function start(): Promise<void> {
  let me: Me;
  try {
    me = await api<Me>("auth/me");
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      mountLogin(app, () => void start());
      return;
    }
    throw error;
  }
  const session = new Session(me);
  live?.stop();
  live = new LiveFeed();
  live.start();
  window.onhashchange = () => void route(session);
  await route(session);
}

function currentPath(): string {
  return location.hash.replace(/^#\/?/, "").split("?")[0] ?? "";
}

async function route(session: Session): Promise<void> {
  teardown();
  teardown = () => undefined;
  const path = currentPath();
  const allowed = sectionsFor(session.role);
  if (!allowed.some((s) => s.path === path)) {
    if (allowed[0]) {
      location.replace(`#/${allowed[0].path}`);
      return;
    }
  }
  const main = h("main", { id: "main", tabIndex: -1 });
  const status = h("p", { class: "visually-hidden", role: "status", aria: { live: "polite" } });
  replaceChildren(app, shell(session, path), main, status);
  const projectId = session.projectId;
  if (projectId === null || !allowed.some((s) => s.path === path)) {
    replaceChildren(
      main,
      h("h1", {}, "Welcome"),
      h("p", {}, projectId === null ? "You are not a member of any project yet." : "Your role has no pages here yet."),
    );
    return;
  }
  const project = await api<Project>(`projects/${projectId}`);
  const page = await pages[path]!();
  teardown = page({
    session,
    project,
    root: main,
    live: live!,
    announce: (message) => {
      status.textContent = message;
    },
  });
}

function shell(session: Session, path: string): HTMLElement {
  const switcher = h(
    "select",
    {
      id: "project-switcher",
      aria: { label: "Project" },
      on: {
        change: (event) => {
          session.projectId = Number((event.target as HTMLSelectElement).value);
          void route(session);
        },
      },
    },
    ...session.me.projects.map((p) => {
      const option = h("option", { value: String(p.id) }, `${p.name} (${p.role})`);
      option.selected = p.id === session.projectId;
      return option;
    }),
  );
  const links = sectionsFor(session.role).map((section) =>
    h(
      "a",
      { href: `#/${section.path}`, aria: section.path === path ? { current: "page" } : {} },
      section.label,
    ),
  );
  const liveBadge = h("span", { class: "live-badge", id: "live-status", role: "status" }, "Connecting…");
  unwatchLive();
  unwatchLive = live?.onStatus((state) => {
    liveBadge.textContent = state === "live" ? "Live" : state === "connecting" ? "Connecting…" : "Offline";
    liveBadge.dataset.state = state;
  }) ?? (() => undefined);
  const logout = h(
    "button",
    {
      type: "button",
      on: {
        click: async () => {
          await api("auth/logout", { method: "POST" });
          live?.stop();
          location.hash = "";
          mountLogin(app, () => void start());
        },
      },
    },
    "Sign out",
  );
  return h(
    "header",
    { class: "topbar" },
    h("a", { class: "skip-link", href: "#main" }, "Skip to content"),
    h("span", { class: "brand" }, "Loupe"),
    h("nav", { aria: { label: "Sections" } }, ...links),
    h("label", { class: "switcher" }, "Project ", switcher),
    liveBadge,
    h("span", { class: "who" }, session.me.username),
    logout,
  );
}

start().catch((error: unknown) => {
  replaceChildren(app, h("main", {}, h("h1", {}, "Loupe could not start"), h("p", {}, String(error))));
});
