import type { Project } from "./api";
import type { LiveFeed } from "./live";
import type { Session } from "./session";

/** What a page gets when it is shown; it returns a function that tears it down. */
export interface PageContext {
  session: Session;
  project: Project;
  root: HTMLElement;
  live: LiveFeed;
  announce(message: string): void;
}

export type Page = (context: PageContext) => () => void;
