// One run: its status, fields, flags and metrics follow the runs dir, and
// its output follows as `gage-submit logs -f` does (/events/runs/ID: the
// last lines at once, then what is written).
"use strict";

(() => {
  const section = document.getElementById("run");
  if (!section) return;
  const id = section.dataset.id;
  const output = document.getElementById("output");
  const MAX_OUTPUT_CHARS = 4 * 1024 * 1024;

  function atBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
  }

  function appendOutput(data) {
    const follow = atBottom();
    if (data.reset) output.textContent = "";
    output.append(document.createTextNode(data.text));
    if (output.textContent.length > MAX_OUTPUT_CHARS) {
      output.textContent = output.textContent.slice(-MAX_OUTPUT_CHARS / 2);
    }
    output.dataset.length = String(output.textContent.length);
    if (follow && data.text) window.scrollTo(0, document.body.scrollHeight);
  }

  function pairsTable(tableId, pairs, empty) {
    const table = document.getElementById(tableId);
    if (!table) return;
    const rows = pairs.length
      ? pairs.map(([k, v]) => Gage.el("tr", {}, Gage.el("th", { text: k }), Gage.el("td", { text: v })))
      : [Gage.el("tr", {}, Gage.el("td", { class: "empty", text: empty }))];
    table.replaceChildren(Gage.el("tbody", {}, ...rows));
  }

  function showDetail(d) {
    document.getElementById("status").replaceWith(Object.assign(Gage.statusSpan(d.status), { id: "status" }));
    document.getElementById("reason").textContent = d.reason;
    document.getElementById("label").textContent = d.label;
    const fields = document.getElementById("fields");
    const items = [];
    for (const [name, value] of d.fields) {
      items.push(Gage.el("dt", { text: name }), Gage.el("dd", { "data-field": name, text: value }));
    }
    fields.replaceChildren(...items);
    pairsTable("flags", d.flags, "none");
    pairsTable("metrics", d.metrics, "none yet");
    const cancel = document.getElementById("cancel");
    if (cancel) cancel.disabled = !["pending", "queued", "running"].includes(d.status);
  }

  Gage.live(`/events/runs/${encodeURIComponent(id)}`, { detail: showDetail, output: appendOutput });

  const result = document.getElementById("action-result");
  const cancel = document.getElementById("cancel");
  if (cancel) {
    cancel.addEventListener("click", async () => {
      const r = await Gage.act(`/api/runs/${encodeURIComponent(id)}/cancel`);
      result.textContent = r.ok ? "cancel requested" : `not cancelled: ${r.data.error || r.data.status || r.status}`;
    });
  }
  const form = document.getElementById("label-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const label = document.getElementById("label-input").value;
      const r = await Gage.act(`/api/runs/${encodeURIComponent(id)}/label`, { label });
      result.textContent = r.ok ? "label set" : `label not set: ${r.data.error || r.status}`;
    });
  }
})();
