// Live rows for the worker pages of the admin: the Channels and Workers tables follow the
// admin live feed (worker.admin.live) when the project mounts it; otherwise they show what
// the page was rendered with and refresh on reload. Text only: nothing received becomes HTML.
"use strict";
(function () {
  const status = document.getElementById("cw-live");
  if (!status || !("WebSocket" in window)) {
    return;
  }
  const page = status.dataset.page;
  const table = document.getElementById(page === "channels" ? "cw-channels" : "cw-workers");
  const key = table.dataset.key;
  const names = page === "channels"
    ? ["channel", "queued", "oldest_age_s", "in_flight", "delayed", "dead_letters",
       "live_workers", "completed_last_minute", "sparkline"]
    : ["worker_id", "host", "pid", "channels", "event_loop", "in_flight", "uptime",
       "last_report_s", "healthy", "problem"];

  function shown(name, value) {
    if (name === "oldest_age_s") {
      return `${Number(value).toFixed(1)} s`;
    }
    if (name === "last_report_s") {
      return Number(value).toFixed(1);
    }
    if (name === "healthy") {
      return value ? "yes" : "no";
    }
    return String(value);
  }

  function cell(row, name, index) {
    const element = document.createElement(index === 0 ? "th" : "td");
    if (index === 0) {
      element.scope = "row";
    }
    element.dataset.field = name;
    if (name === table.dataset.linkField) {
      const link = document.createElement("a");
      link.href = table.dataset.link.replace("CHANNEL", encodeURIComponent(row.channel));
      element.append(link);
    }
    return element;
  }

  function fill(element, name, value) {
    const target = element.querySelector("a") || element;
    target.textContent = shown(name, value);
    if (name === "healthy") {
      element.classList.toggle("cw-unhealthy", !value);
    }
  }

  function render(rows) {
    const body = table.tBodies[0];
    const kept = new Map();
    for (const row of rows) {
      const attribute = key === "channel" ? "channel" : "worker";
      const selector = `tr[data-${attribute}="${CSS.escape(String(row[key]))}"]`;
      let line = body.querySelector(selector);
      if (!line) {
        line = document.createElement("tr");
        line.dataset[attribute] = row[key];
        names.forEach((name, index) => line.append(cell(row, name, index)));
      }
      for (const name of names) {
        const element = line.querySelector(`[data-field="${name}"]`);
        if (element) {
          fill(element, name, row[name]);
        }
      }
      kept.set(String(row[key]), line);
    }
    body.replaceChildren(...kept.values());
    if (!rows.length) {
      const empty = document.createElement("tr");
      const text = document.createElement("td");
      text.colSpan = names.length;
      text.textContent = "No live workers.";
      empty.append(text);
      body.append(empty);
    }
  }

  let retries = 0;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/${status.dataset.path}`);
    socket.onopen = () => {
      retries = 0;
      status.textContent = "Live: updates every few seconds.";
      status.dataset.state = "live";
    };
    socket.onmessage = (event) => {
      const data = JSON.parse(event.data);
      if (data.problem) {
        status.textContent = `Live, but ${data.problem}`;
        return;
      }
      if (data[page]) {
        render(data[page]);
        status.dataset.updates = String(Number(status.dataset.updates || 0) + 1);
      }
    };
    socket.onclose = (event) => {
      status.dataset.state = "closed";
      if (event.code === 4403) {
        status.textContent = "Updates on reload (no live permission).";
        return;
      }
      status.textContent = "Updates on reload (live feed unavailable).";
      retries += 1;
      if (retries <= 5) {
        setTimeout(connect, 1000 * 2 ** retries);
      }
    };
  }
  connect();
})();
