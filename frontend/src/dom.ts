// The one way this front end puts things on a page. Text from the server always goes in as
// text nodes (textContent), never as HTML: a defect class called `<img src=x onerror=...>`
// shows those characters and runs nothing (bad-inputs case 20). There is no innerHTML in
// src/ and a unit test keeps it that way.

export type Child = Node | string | number | null | undefined | false;

export interface Props {
  class?: string;
  id?: string;
  title?: string;
  role?: string;
  tabIndex?: number;
  type?: string;
  name?: string;
  value?: string;
  for?: string;
  href?: string;
  src?: string;
  alt?: string;
  disabled?: boolean;
  hidden?: boolean;
  aria?: Record<string, string>;
  data?: Record<string, string>;
  attrs?: Record<string, string>;
  on?: { [K in keyof HTMLElementEventMap]?: (event: HTMLElementEventMap[K]) => void };
}

/** Only same-origin paths and http(s) URLs become links or image sources: a `javascript:` or
 * `data:` URL from the server is dropped, not followed. */
export function safeUrl(url: string | null | undefined): string | null {
  if (!url) return null;
  const trimmed = url.trim();
  if (trimmed.startsWith("/") && !trimmed.startsWith("//")) return trimmed;
  if (trimmed.startsWith("#")) return trimmed;
  try {
    const parsed = new URL(trimmed);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (props.class) node.className = props.class;
  if (props.id) node.id = props.id;
  if (props.title) node.title = props.title;
  if (props.role) node.setAttribute("role", props.role);
  if (props.tabIndex !== undefined) node.tabIndex = props.tabIndex;
  if (props.type) node.setAttribute("type", props.type);
  if (props.name) node.setAttribute("name", props.name);
  if (props.value !== undefined) (node as HTMLInputElement).value = props.value;
  if (props.for) node.setAttribute("for", props.for);
  if (props.disabled) node.setAttribute("disabled", "");
  if (props.hidden) node.hidden = true;
  const href = props.href === undefined ? undefined : safeUrl(props.href);
  if (href) node.setAttribute("href", href);
  const src = props.src === undefined ? undefined : safeUrl(props.src);
  if (src) node.setAttribute("src", src);
  if (props.alt !== undefined) node.setAttribute("alt", props.alt);
  for (const [key, value] of Object.entries(props.aria ?? {})) node.setAttribute(`aria-${key}`, value);
  for (const [key, value] of Object.entries(props.data ?? {})) node.dataset[key] = value;
  for (const [key, value] of Object.entries(props.attrs ?? {})) {
    if (/^on/i.test(key) || key === "href" || key === "src" || key === "style") continue;
    node.setAttribute(key, value);
  }
  for (const [event, listener] of Object.entries(props.on ?? {})) {
    node.addEventListener(event, listener as EventListener);
  }
  append(node, ...children);
  return node;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
}

export function replaceChildren(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, ...children);
}

/** "3 min ago", "2 h ago": ages in the queue, read at a glance. */
export function ago(iso: string, now: number = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

export function percent(value: number | null | undefined, digits = 1): string {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : `${(value * 100).toFixed(digits)} %`;
}
