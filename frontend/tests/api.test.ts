import { describe, expect, it } from "vitest";

import { reasonOf } from "../src/api";

describe("reasonOf: what a refused request tells the user", () => {
  it("names each refused field and why", () => {
    const body = { code: "invalid", detail: "Invalid input.", errors: { image_retention_days: ["Ensure this value is greater than or equal to 1."] } };

    expect(reasonOf(body, 400)).toEqual({
      code: "invalid",
      detail: "Invalid input. image_retention_days: Ensure this value is greater than or equal to 1.",
    });
  });

  it("keeps a domain error's own sentence", () => {
    expect(reasonOf({ code: "image_removed", detail: "This image was removed." }, 410)).toEqual({ code: "image_removed", detail: "This image was removed." });
  });

  it("falls back to the status when the body says nothing", () => {
    expect(reasonOf(null, 502)).toEqual({ code: null, detail: "Request failed (502)." });
  });
});
