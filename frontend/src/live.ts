// One websocket per tab to /ws/review/: review.item.* events for the projects the user
// reviews, training.progress for those they manage. Reconnects with backoff.

import type { LiveEvent } from "./review/queue";

type Listener = (event: LiveEvent) => void;
type StatusListener = (status: "connecting" | "live" | "offline") => void;

export class LiveFeed {
  private socket: WebSocket | null = null;
  private readonly listeners = new Set<Listener>();
  private readonly statusListeners = new Set<StatusListener>();
  private retryMs = 500;
  private closed = false;
  private state: "connecting" | "live" | "offline" = "offline";

  constructor(private readonly url: string = LiveFeed.defaultUrl()) {}

  static defaultUrl(): string {
    return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws/review/`;
  }

  start(): void {
    this.closed = false;
    this.connect();
  }

  stop(): void {
    this.closed = true;
    this.socket?.close();
    this.socket = null;
  }

  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called now with the current state, then on every change. */
  onStatus(listener: StatusListener): () => void {
    this.statusListeners.add(listener);
    listener(this.state);
    return () => this.statusListeners.delete(listener);
  }

  private setStatus(status: "connecting" | "live" | "offline"): void {
    this.state = status;
    for (const listener of this.statusListeners) listener(status);
  }

  private connect(): void {
    this.setStatus("connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => {
      this.retryMs = 500;
    };
    socket.onmessage = (message: MessageEvent<string>) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(message.data);
      } catch {
        return;
      }
      if (!parsed || typeof parsed !== "object" || typeof (parsed as LiveEvent).event !== "string") return;
      const event = parsed as LiveEvent;
      if (event.event === "hello") this.setStatus("live");
      for (const listener of this.listeners) listener(event);
    };
    socket.onclose = () => {
      this.setStatus("offline");
      if (this.closed || this.socket !== socket) return;
      window.setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 15_000);
    };
  }
}
