// The reviewer's view of the live queue, kept in step with the server's websocket events.
// Pure state: no DOM, no network, so the rules are unit-tested (tests/queue.test.ts).

import type { ReviewItem } from "../api";

export interface LiveEvent {
  event: string;
  payload?: unknown;
}

export type SlaState = "ok" | "soon" | "breached";

/** SLA state of an item: "soon" in its last quarter hour (or last fifth of a short SLA). */
export function slaState(item: Pick<ReviewItem, "created_at" | "sla_due_at">, now: number = Date.now()): SlaState {
  const due = Date.parse(item.sla_due_at);
  const total = due - Date.parse(item.created_at);
  const left = due - now;
  if (left <= 0) return "breached";
  return left <= Math.min(15 * 60_000, total / 5) ? "soon" : "ok";
}

export class ReviewQueue {
  private readonly items = new Map<number, ReviewItem>();

  constructor(
    private readonly me: number,
    private readonly project: number,
  ) {}

  /** Open items waiting for anyone; an item claimed by someone else or decided is not shown. */
  upsert(item: ReviewItem): boolean {
    if (item.project !== this.project) return false;
    if (item.status !== "open") return this.remove(item.id);
    this.items.set(item.id, item);
    return true;
  }

  remove(id: number): boolean {
    return this.items.delete(id);
  }

  has(id: number): boolean {
    return this.items.has(id);
  }

  get size(): number {
    return this.items.size;
  }

  /** Apply a websocket event; true when the visible queue changed. */
  apply(message: LiveEvent): boolean {
    const payload = message.payload as Partial<ReviewItem> | undefined;
    if (!payload || typeof payload.id !== "number") return false;
    switch (message.event) {
      case "review.item.added":
      case "review.item.released":
        return this.upsert(payload as ReviewItem);
      case "review.item.claimed":
      case "review.item.decided":
        // Claimed by anyone (me included: it is on my screen as the current part) or decided:
        // it is no longer waiting.
        return this.remove(payload.id);
      default:
        return false;
    }
  }

  /** Most urgent first: the earliest SLA deadline, then the oldest. */
  ordered(): ReviewItem[] {
    return [...this.items.values()].sort(
      (a, b) => Date.parse(a.sla_due_at) - Date.parse(b.sla_due_at) || a.id - b.id,
    );
  }

  breached(now: number = Date.now()): number {
    return [...this.items.values()].filter((item) => slaState(item, now) === "breached").length;
  }

  get reviewer(): number {
    return this.me;
  }
}
