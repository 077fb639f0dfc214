// Who is signed in, which project they work in, and what their role there lets them see.

import type { Me, Role } from "./api";

export interface Section {
  path: string;
  label: string;
  roles: Role[];
}

export const SECTIONS: Section[] = [
  { path: "review", label: "Review", roles: ["reviewer", "manager", "admin"] },
  { path: "annotate", label: "Annotate", roles: ["annotator", "reviewer", "manager", "admin"] },
  { path: "dashboard", label: "Dashboard", roles: ["manager", "admin"] },
  { path: "training", label: "Training", roles: ["manager", "admin"] },
  { path: "settings", label: "Settings", roles: ["manager", "admin"] },
];

export function sectionsFor(role: Role | null): Section[] {
  return role ? SECTIONS.filter((section) => section.roles.includes(role)) : [];
}

const PROJECT_KEY = "loupe.project";

export class Session {
  constructor(
    readonly me: Me,
    private storage: Pick<Storage, "getItem" | "setItem"> = window.localStorage,
  ) {}

  get projectId(): number | null {
    const saved = Number(this.storage.getItem(PROJECT_KEY));
    const projects = this.me.projects;
    if (projects.some((p) => p.id === saved)) return saved;
    return projects[0]?.id ?? null;
  }

  set projectId(id: number | null) {
    if (id !== null) this.storage.setItem(PROJECT_KEY, String(id));
  }

  get role(): Role | null {
    return this.me.projects.find((p) => p.id === this.projectId)?.role ?? null;
  }

  may(section: string): boolean {
    return sectionsFor(this.role).some((s) => s.path === section);
  }
}
