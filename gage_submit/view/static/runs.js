// The runs table: statuses and times follow the runs dir over server-sent
// events (/events/runs, the shown rows only); when runs are added or
// deleted the rows are fetched again (/api/runs) without a reload.
"use strict";

(() => {
  const table = document.getElementById("runs");
  if (!table) return;
  const tbody = table.tBodies[0];
  const COLUMNS = ["name", "op", "started", "time", "status", "host", "worker", "reason", "label"];
  let source = null;

  function shownIds() {
    return [...tbody.rows].map((tr) => tr.dataset.id).filter(Boolean);
  }

  function connect() {
    if (source) source.close();
    const query = new URLSearchParams();
    for (const id of shownIds()) query.append("id", id);
    source = Gage.live(`/events/runs?${query}`, { row: update, listing: refresh });
  }

  function setCell(tr, column, row) {
    const td = tr.querySelector(`td[data-col="${column}"]`);
    if (!td) return;
    const value = row[column] ?? "";
    if (column === "status") td.replaceChildren(Gage.statusSpan(value));
    else if (column === "name") td.replaceChildren(Gage.runLink(row.id, value));
    else td.textContent = value;
  }

  function update(row) {
    const tr = [...tbody.rows].find((r) => r.dataset.id === row.id);
    if (!tr) return;
    if (row.gone) {
      tr.classList.add("gone");
      return;
    }
    for (const column of COLUMNS) {
      if (column in row) setCell(tr, column, row);
    }
  }

  function rowElement(row, checked) {
    const tr = Gage.el("tr", { "data-id": row.id });
    const box = row.id
      ? Gage.el("input", { type: "checkbox", name: "run", value: row.id, form: "compare-form" })
      : null;
    if (box) box.checked = checked.has(row.id);
    tr.append(Gage.el("td", { class: "select" }, box), Gage.el("td", { class: "num", text: row.index }));
    for (const column of COLUMNS) {
      const td = Gage.el("td", { "data-col": column });
      tr.append(td);
      setCell(tr, column, row);
    }
    return tr;
  }

  async function refresh() {
    const response = await fetch(`/api/runs${location.search}`, { credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    const checked = new Set([...tbody.querySelectorAll("input[name=run]:checked")].map((b) => b.value));
    tbody.replaceChildren(...data.rows.map((row) => rowElement(row, checked)));
    document.getElementById("count").textContent = `${data.total} run${data.total === 1 ? "" : "s"}`;
    connect();
  }

  const selectAll = document.getElementById("select-all");
  if (selectAll) {
    selectAll.addEventListener("change", () => {
      for (const box of tbody.querySelectorAll("input[name=run]")) box.checked = selectAll.checked;
    });
  }
  connect();
})();
