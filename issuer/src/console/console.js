// The operator console's live decision stream: follows /console/events (SSE) with the page's
// filters and adds each line at the top of the table. Every value goes in as text, never as
// markup. Without this script the page still shows the lines as of its loading.
"use strict";
(function () {
  const table = document.getElementById("stream");
  const state = document.getElementById("live");
  if (!table || !state) return;
  const KEEP = 500;

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function row(line) {
    const tr = document.createElement("tr");
    tr.className = line.outcome;
    tr.dataset.seq = String(line.seq);
    tr.append(
      cell(line.time),
      cell(line.outcome, "outcome"),
      cell(line.user),
      cell(line.agents.join(" → ")),
      cell(line.upstream),
      cell(line.what),
      cell(line.detail),
      cell(line.gateway),
    );
    return tr;
  }

  const query = new URLSearchParams(window.location.search);
  const params = new URLSearchParams();
  for (const name of ["user", "agent", "upstream", "outcome"]) {
    const value = query.get(name);
    if (value) params.set(name, value);
  }
  params.set("after", table.dataset.head || "0");
  const source = new EventSource("/console/events?" + params.toString());
  source.onopen = function () {
    state.textContent = "live";
  };
  source.onerror = function () {
    state.textContent = "reconnecting…";
  };
  source.addEventListener("line", function (message) {
    const line = JSON.parse(message.data);
    table.prepend(row(line));
    while (table.rows.length > KEEP) table.deleteRow(-1);
  });
})();
