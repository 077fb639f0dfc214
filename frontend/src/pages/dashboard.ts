// Manager dashboards: filled in once the rollup-backed dashboard API lands (issue 5).
import type { Page, PageContext } from "../context";
import { h, replaceChildren } from "../dom";

export const dashboardPage: Page = (context: PageContext) => {
  replaceChildren(context.root, h("h1", {}, "Dashboard: ", context.project.name));
  return () => undefined;
};
