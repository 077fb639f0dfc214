// Decisions wait a short grace period before they are sent, so the last one can be undone
// without the server ever recording it. Only the last decision is held: deciding the next
// part sends the previous one at once.

export interface PendingDecision<T> {
  itemId: number;
  decision: T;
  dueAt: number;
}

export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => window.setTimeout(callback, ms),
  clearTimeout: (handle) => window.clearTimeout(handle as number),
};

export class DecisionBuffer<T> {
  private pending: PendingDecision<T> | null = null;
  private timer: unknown = null;

  constructor(
    private readonly send: (itemId: number, decision: T) => Promise<void>,
    readonly graceMs: number,
    private readonly clock: Clock = realClock,
  ) {}

  /** Hold a decision; the one held before it is sent now. */
  async hold(itemId: number, decision: T): Promise<void> {
    const previous = this.take();
    this.pending = { itemId, decision, dueAt: this.clock.now() + this.graceMs };
    this.timer = this.clock.setTimeout(() => void this.flush(), this.graceMs);
    if (previous) await this.send(previous.itemId, previous.decision);
  }

  /** Take back the held decision (undo); null when the grace period is over. */
  undo(): PendingDecision<T> | null {
    return this.take();
  }

  /** Send the held decision now (grace period over, page closing). */
  async flush(): Promise<void> {
    const held = this.take();
    if (held) await this.send(held.itemId, held.decision);
  }

  get held(): PendingDecision<T> | null {
    return this.pending;
  }

  secondsLeft(): number {
    return this.pending ? Math.max(0, Math.ceil((this.pending.dueAt - this.clock.now()) / 1000)) : 0;
  }

  private take(): PendingDecision<T> | null {
    const held = this.pending;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.pending = null;
    this.timer = null;
    return held;
  }
}
