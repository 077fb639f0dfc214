import { describe, expect, it } from "vitest";

import { describeSample } from "../src/dashboard/routing";

const fitted = { parts: 2400, t_pass: 0.21, expected_review_rate: 0.064, sample_since: null };

describe("what the routing thresholds were fitted on", () => {
  it("names the fair sample and the share of parts sent to people", () => {
    const text = describeSample(fitted, "UTC");
    expect(text).toContain("latest 2400 parts that came to people whatever their scores");
    expect(text).toContain("about 6.4 % of parts go to people");
  });

  it("says when the latest audited parts made the fit start again, on the plant's clock", () => {
    const text = describeSample({ ...fitted, parts: 1000, sample_since: "2026-12-04T05:30:00Z" }, "Europe/Berlin");
    expect(text).toContain("breaking a target");
    expect(text).toContain("1000 parts decided since 4 Dec 2026, 06:30");
  });

  it("says when the fit cannot pass any part yet, and when there is none", () => {
    expect(describeSample({ ...fitted, parts: 120, t_pass: -1 }, "UTC")).toContain("too few to pass any part yet");
    expect(describeSample(null, "UTC")).toContain("No thresholds fitted yet");
  });
});
