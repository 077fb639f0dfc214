import { describe, expect, it } from "vitest";
import { type Clock, DecisionBuffer } from "../src/review/undo";

class FakeClock implements Clock {
  time = 0;
  private timers = new Map<number, { at: number; callback: () => void }>();
  private next = 1;
  now(): number {
    return this.time;
  }
  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.time + ms, callback });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  advance(ms: number): void {
    this.time += ms;
    for (const [id, timer] of [...this.timers]) {
      if (timer.at <= this.time) {
        this.timers.delete(id);
        timer.callback();
      }
    }
  }
}

function buffer() {
  const sent: [number, string][] = [];
  const clock = new FakeClock();
  const decisions = new DecisionBuffer<string>(async (id, d) => void sent.push([id, d]), 5000, clock);
  return { sent, clock, decisions };
}

describe("undo within the grace period", () => {
  it("sends a decision only when the grace period is over", async () => {
    const { sent, clock, decisions } = buffer();
    await decisions.hold(1, "pass");
    clock.advance(4999);
    expect(sent).toEqual([]);
    clock.advance(1);
    await Promise.resolve();
    expect(sent).toEqual([[1, "pass"]]);
  });

  it("an undone decision is never sent", async () => {
    const { sent, clock, decisions } = buffer();
    await decisions.hold(1, "fail");
    expect(decisions.undo()).toMatchObject({ itemId: 1, decision: "fail" });
    clock.advance(10_000);
    expect(sent).toEqual([]);
  });

  it("only the last decision can be undone: the one before is sent at once", async () => {
    const { sent, decisions } = buffer();
    await decisions.hold(1, "pass");
    await decisions.hold(2, "fail");
    expect(sent).toEqual([[1, "pass"]]);
    expect(decisions.undo()?.itemId).toBe(2);
    expect(decisions.undo()).toBeNull();
  });

  it("counts the seconds left and flushes on leaving", async () => {
    const { sent, clock, decisions } = buffer();
    await decisions.hold(3, "pass");
    clock.advance(1500);
    expect(decisions.secondsLeft()).toBe(4);
    await decisions.flush();
    expect(sent).toEqual([[3, "pass"]]);
    expect(decisions.secondsLeft()).toBe(0);
  });
});
