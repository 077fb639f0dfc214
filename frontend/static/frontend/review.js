// Minimal live review queue (the typed console comes with the front-end issue).
// Everything from the server is put on the page with textContent: never as HTML.
"use strict";
(function () {
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]").value;
  const queue = document.getElementById("queue");
  const statusLine = document.getElementById("status");
  const classes = new Map();
  const items = new Map();

  function el(tag, text) { const node = document.createElement(tag); if (text !== undefined) node.textContent = String(text); return node; }

  function render(item) {
    if (items.has(item.id) || item.status === "decided") return;
    const card = el("section"); card.className = "item"; card.dataset.id = item.id; card.tabIndex = 0;
    if (item.image) { const img = el("img"); img.src = item.image.url; img.alt = "Part " + item.part.serial; card.append(img); }
    const info = el("div");
    info.append(el("h2", "Part " + item.part.serial), el("p", "Routed: " + item.reason), el("p", item.station ? item.station.line + " / " + item.station.name : ""));
    card.append(info); queue.append(card); items.set(item.id, card);
    if (items.size === 1) card.classList.add("current");
  }
  function drop(id) { const card = items.get(id); if (card) { card.remove(); items.delete(id); } const first = queue.querySelector(".item"); if (first) first.classList.add("current"); }

  async function decide(outcome, defectClass) {
    const card = queue.querySelector(".item.current"); if (!card) return;
    const body = { outcome: outcome }; if (defectClass) body.defect_class = defectClass;
    const response = await fetch("/api/v1/review-items/" + card.dataset.id + "/decide", {
      method: "POST", headers: { "Content-Type": "application/json", "X-CSRFToken": csrf }, body: JSON.stringify(body), credentials: "same-origin" });
    if (response.ok || response.status === 409) drop(Number(card.dataset.id));
    else statusLine.textContent = "Decision failed: " + response.status;
  }

  document.addEventListener("keydown", (event) => {
    if (event.key === "p") decide("pass");
    else if (/^[1-9]$/.test(event.key) && classes.has(Number(event.key))) decide("fail", classes.get(Number(event.key)));
  });

  async function load() {
    const projects = await (await fetch("/api/v1/projects", { credentials: "same-origin" })).json();
    for (const project of projects.results) for (const dc of project.defect_classes) if (dc.hotkey) classes.set(dc.hotkey, dc.id);
    const open = await (await fetch("/api/v1/review-items?status=open", { credentials: "same-origin" })).json();
    open.results.forEach(render);
  }

  const socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/review/");
  socket.onopen = () => { statusLine.textContent = "Live"; };
  socket.onclose = () => { statusLine.textContent = "Disconnected: reload to reconnect"; };
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.event === "review.item.added" || event.event === "review.item.released") render(event.payload);
    else if (event.event === "review.item.decided" || event.event === "review.item.claimed") drop(event.payload.id);
  };
  load();
})();
