import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { h, safeUrl } from "../src/dom";

const HOSTILE = `<img src=x onerror="window.pwned=1">`;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") ? [path] : [];
  });
}

describe("text from the server is inert (bad-inputs case 20)", () => {
  it("a hostile label is shown as text and creates no element", () => {
    const node = h("p", {}, "Defect: ", HOSTILE);
    document.body.append(node);
    expect(node.textContent).toBe(`Defect: ${HOSTILE}`);
    expect(node.querySelector("img")).toBeNull();
    expect((window as unknown as { pwned?: number }).pwned).toBeUndefined();
  });

  it("javascript: and data: URLs never become links or image sources", () => {
    expect(safeUrl("javascript:alert(1)")).toBeNull();
    expect(safeUrl(" JaVaScRiPt:alert(1)")).toBeNull();
    expect(safeUrl("data:text/html,<script>alert(1)</script>")).toBeNull();
    expect(safeUrl("//evil.example/x.png")).toBeNull();
    expect(safeUrl("/api/v1/inspections/3/image")).toBe("/api/v1/inspections/3/image");
    expect(h("a", { href: "javascript:alert(1)" }).hasAttribute("href")).toBe(false);
    expect(h("img", { src: "data:image/svg+xml,<svg onload=alert(1)>" }).hasAttribute("src")).toBe(false);
  });

  it("event-handler attributes cannot be set through attrs", () => {
    const node = h("div", { attrs: { onclick: "alert(1)", "data-x": "1" } });
    expect(node.hasAttribute("onclick")).toBe(false);
    expect(node.getAttribute("data-x")).toBe("1");
  });

  it("no source file writes HTML strings into the page", () => {
    const offenders = sources(join(import.meta.dirname, "..", "src")).filter((file) =>
      /\.innerHTML|outerHTML|insertAdjacentHTML|document\.write|renderMode:\s*["']html/.test(readFileSync(file, "utf8")),
    );
    expect(offenders).toEqual([]);
  });
});
