// Palaestra dashboard: the little that needs a script. Pages work without it except live progress.
// Text from the database is only ever written with textContent / text nodes, never as HTML.
"use strict";

function setupSearch() {
  const input = document.getElementById("turn-search");
  const onlyInvalid = document.getElementById("only-invalid");
  const counter = document.getElementById("search-count");
  if (!input) return;
  const turns = Array.from(document.querySelectorAll("#turns .turn"));
  const original = new Map();
  for (const pre of document.querySelectorAll("#turns .turn pre")) original.set(pre, pre.textContent);

  function highlight(pre, needle) {
    const text = original.get(pre);
    if (!needle) { pre.textContent = text; return 0; }
    const lower = text.toLowerCase();
    const parts = [];
    let at = 0, found = 0, i;
    while ((i = lower.indexOf(needle, at)) !== -1) {
      parts.push(document.createTextNode(text.slice(at, i)));
      const mark = document.createElement("mark");
      mark.textContent = text.slice(i, i + needle.length);
      parts.push(mark);
      at = i + needle.length;
      found++;
    }
    parts.push(document.createTextNode(text.slice(at)));
    pre.replaceChildren(...parts);
    return found;
  }

  function apply() {
    const needle = input.value.trim().toLowerCase();
    let shown = 0, hits = 0;
    for (const turn of turns) {
      let found = 0;
      for (const pre of turn.querySelectorAll("pre")) found += highlight(pre, needle);
      const header = turn.querySelector("header").textContent.toLowerCase();
      const matches = !needle || found > 0 || header.includes(needle);
      const visible = matches && (!onlyInvalid.checked || turn.classList.contains("invalid"));
      turn.classList.toggle("hidden", !visible);
      if (visible) { shown++; hits += found; }
    }
    counter.textContent = needle || onlyInvalid.checked
      ? `${shown} of ${turns.length} turns shown` + (needle ? `, ${hits} matches` : "")
      : "";
  }
  input.addEventListener("input", apply);
  onlyInvalid.addEventListener("change", apply);
}

function setupSelection() {
  const form = document.getElementById("select-form");
  if (!form) return;
  const compare = document.getElementById("compare-button");
  const report = document.getElementById("report-button");
  function update() {
    const n = form.querySelectorAll("input[name=run]:checked").length;
    compare.disabled = n < 2;
    report.disabled = n < 1;
  }
  form.addEventListener("change", update);
  update();
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function setupLive() {
  const table = document.getElementById("live-table");
  if (!table) return;
  const status = document.getElementById("live-status");
  const empty = document.getElementById("live-empty");
  const source = new EventSource("/events/progress");
  source.addEventListener("open", () => { status.textContent = "connected"; });
  source.addEventListener("error", () => { status.textContent = "reconnecting…"; });
  source.addEventListener("progress", (event) => {
    const data = JSON.parse(event.data);
    for (const row of Array.from(table.querySelectorAll("tr[data-run]"))) row.remove();
    for (const run of data.runs) {
      const tr = document.createElement("tr");
      tr.dataset.run = run.id;
      const idCell = document.createElement("td");
      idCell.className = "mono";
      const link = document.createElement("a");
      link.href = "/runs/" + encodeURIComponent(run.id);
      link.textContent = run.id;
      idCell.append(link);
      const bar = document.createElement("progress");
      bar.max = run.planned || 1;
      bar.value = run.done;
      const wrap = document.createElement("span");
      wrap.className = "progress";
      wrap.append(bar);
      const barCell = document.createElement("td");
      barCell.append(wrap);
      tr.append(idCell, cell(run.env_id), cell(run.agent), cell(run.model || "-"),
                cell(`${run.done} / ${run.planned}`, "num done"), barCell, cell(run.created), cell(run.last, "last"));
      table.append(tr);
    }
    empty.hidden = data.runs.length > 0;
    status.textContent = "updated " + new Date().toLocaleTimeString();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupSearch();
  setupSelection();
  setupLive();
});
