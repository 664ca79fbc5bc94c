// The pool: hosts, workers, slots and GPUs with the run holding each, and
// queues with their waiting runs, redrawn when /events/pool says it changed.
"use strict";

(() => {
  const root = document.getElementById("pool");
  if (!root) return;
  const { el } = Gage;

  function state(up, yes, no) {
    return el("span", { class: `state ${up ? "up" : "down"}`, text: up ? yes : no });
  }

  function runCell(run) {
    return el("td", {}, run ? Gage.runLink(run.id, run.name) : null);
  }

  function slotRow(worker, slot) {
    return el("tr", {}, worker, el("td", { text: slot.name }),
      el("td", { text: slot.held ? "held" : "free" }), runCell(slot.run));
  }

  function host(h) {
    const table = el("table", { class: "slots" },
      el("tr", {}, el("th", { text: "worker" }), el("th", { text: "slot" }), el("th", { text: "held" }), el("th", { text: "run" })));
    for (const node of h.nodes) {
      for (const slot of node.slots) {
        const worker = el("td", {}, node.name, node.alive === null ? null : " ",
          node.alive === null ? null : state(node.alive, "up", "gone"));
        table.append(slotRow(worker, slot));
      }
    }
    for (const gpu of h.gpus) table.append(slotRow(el("td", { text: "(host)" }), gpu));
    return el("article", { class: "host", "data-host": h.name },
      el("h3", {}, h.name, " ", state(h.alive, "alive", "no live worker")), table);
  }

  function render(pool) {
    const hosts = document.getElementById("hosts");
    hosts.replaceChildren(...(pool.hosts.length ? pool.hosts.map(host)
      : [el("p", { class: "empty", text: "No worker has used this runs dir yet." })]));
    const queues = document.getElementById("queues");
    const qrows = pool.queues.map((q) => el("tr", {}, el("td", { text: q.name }),
      el("td", { text: q.consumed ? "yes" : "no worker" }),
      el("td", {}, ...q.waiting.flatMap((r) => [Gage.runLink(r.id, r.name), " "]))));
    queues.replaceChildren(el("tr", {}, ...["queue", "consumed", "waiting"].map((t) => el("th", { text: t }))),
      ...(qrows.length ? qrows : [el("tr", {}, el("td", { class: "empty", colspan: 3, text: "no queues" }))]));
    const active = document.getElementById("active");
    const arows = pool.active.map((r) => el("tr", {}, el("td", {}, Gage.runLink(r.id, r.name)),
      el("td", {}, Gage.statusSpan(r.status)), el("td", { text: r.queue }), el("td", { text: r.host }),
      el("td", { text: r.worker }), el("td", { text: r.slot })));
    active.replaceChildren(el("tr", {}, ...["run", "status", "queue", "host", "worker", "slot"].map((t) => el("th", { text: t }))),
      ...(arows.length ? arows : [el("tr", {}, el("td", { class: "empty", colspan: 6, text: "none" }))]));
  }

  Gage.live("/events/pool", { pool: render });
})();
