import { describe, expect, it } from "vitest";
import type { ReviewItem } from "../src/api";
import { ReviewQueue, slaState } from "../src/review/queue";

const base = Date.parse("2026-11-26T10:00:00Z");

function item(id: number, overrides: Partial<ReviewItem> = {}): ReviewItem {
  return {
    id,
    project: 1,
    status: "open",
    reason: "uncertain",
    model_version: "classifier#3",
    part: { id: id, serial: `P-${id}`, sku: "A" },
    station: null,
    image: null,
    scores: {},
    overlays: { heatmap: null, mask: null },
    created_at: new Date(base + id * 1000).toISOString(),
    sla_due_at: new Date(base + id * 1000 + 3_600_000).toISOString(),
    claimed_by: null,
    lease_expires_at: null,
    decided_at: null,
    ...overrides,
  };
}

describe("the live review queue", () => {
  it("shows an added item and drops it when anyone claims or decides it", () => {
    const queue = new ReviewQueue(7, 1);
    expect(queue.apply({ event: "review.item.added", payload: item(1) })).toBe(true);
    expect(queue.apply({ event: "review.item.added", payload: item(2) })).toBe(true);
    expect(queue.apply({ event: "review.item.claimed", payload: { id: 1, status: "claimed", claimed_by: 8 } })).toBe(true);
    expect(queue.apply({ event: "review.item.decided", payload: { id: 2, status: "decided" } })).toBe(true);
    expect(queue.size).toBe(0);
  });

  it("shows a released item again", () => {
    const queue = new ReviewQueue(7, 1);
    queue.apply({ event: "review.item.claimed", payload: { id: 3, claimed_by: 8 } });
    queue.apply({ event: "review.item.released", payload: item(3) });
    expect(queue.ordered().map((i) => i.id)).toEqual([3]);
  });

  it("ignores other projects, malformed events and items that are not open", () => {
    const queue = new ReviewQueue(7, 1);
    expect(queue.apply({ event: "review.item.added", payload: item(4, { project: 2 }) })).toBe(false);
    expect(queue.apply({ event: "review.item.added", payload: "nonsense" })).toBe(false);
    expect(queue.apply({ event: "review.item.added" })).toBe(false);
    expect(queue.apply({ event: "review.item.added", payload: item(5, { status: "decided" }) })).toBe(false);
    expect(queue.size).toBe(0);
  });

  it("orders by SLA deadline, most urgent first", () => {
    const queue = new ReviewQueue(7, 1);
    queue.upsert(item(1, { sla_due_at: new Date(base + 9_000_000).toISOString() }));
    queue.upsert(item(2, { sla_due_at: new Date(base + 1_000_000).toISOString() }));
    queue.upsert(item(3, { sla_due_at: new Date(base + 5_000_000).toISOString() }));
    expect(queue.ordered().map((i) => i.id)).toEqual([2, 3, 1]);
  });

  it("counts SLA breaches and warns in the last stretch", () => {
    const open = item(1);
    const due = Date.parse(open.sla_due_at);
    expect(slaState(open, due - 30 * 60_000)).toBe("ok");
    expect(slaState(open, due - 5 * 60_000)).toBe("soon");
    expect(slaState(open, due + 1)).toBe("breached");
    const queue = new ReviewQueue(7, 1);
    queue.upsert(open);
    expect(queue.breached(due + 1)).toBe(1);
    expect(queue.breached(due - 1)).toBe(0);
  });
});
