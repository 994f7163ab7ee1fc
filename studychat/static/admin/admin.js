// The live study page: log in once with the admin token, then poll the figures and draw
// chats and errors per minute on a canvas. No framework, no network beyond this origin.
"use strict";

(function () {
  const POLL_MS = 5000;
  const STATS_URL = "/admin/api/stats";
  const COLORS = { chats: "#2f5fd0", errors: "#b3261e", grid: "#d9dee7", ink: "#5b6475" };
  const byId = (id) => document.getElementById(id);
  let timer = null;

  function show(section) {
    byId("login").hidden = section !== "login";
    byId("dashboard").hidden = section !== "dashboard";
    byId("nav").hidden = section !== "dashboard";
    if (section === "login") byId("token").focus();
  }

  async function errorText(answer) {
    try {
      return (await answer.json()).error || `HTTP ${answer.status}`;
    } catch (_) {
      return `HTTP ${answer.status}`;
    }
  }

  async function logIn(event) {
    event.preventDefault();
    const answer = await fetch("/admin/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: byId("token").value }),
      credentials: "same-origin",
    });
    byId("token").value = "";
    if (answer.status !== 204) {
      byId("login-error").textContent = await errorText(answer);
      return;
    }
    byId("login-error").textContent = "";
    refresh();
  }

  async function logOut() {
    clearTimeout(timer);
    await fetch("/admin/logout", { method: "POST", credentials: "same-origin" });
    show("login");
  }

  async function refresh() {
    clearTimeout(timer);
    let answer;
    try {
      answer = await fetch(STATS_URL, { credentials: "same-origin", cache: "no-store" });
    } catch (_) {
      byId("status").textContent = "The service cannot be reached; retrying.";
      timer = setTimeout(refresh, POLL_MS);
      return;
    }
    if (answer.status === 401) {
      show("login");
      return;
    }
    if (!answer.ok) {
      byId("status").textContent = `Figures unavailable: ${await errorText(answer)} Retrying.`;
      timer = setTimeout(refresh, POLL_MS);
      return;
    }
    render(await answer.json());
    show("dashboard");
    timer = setTimeout(refresh, POLL_MS);
  }

  const number = (value) => (value === null || value === undefined ? "–" : value.toLocaleString("en"));

  function render(stats) {
    byId("participants-saved").textContent = number(stats.participantsSaved);
    byId("chats-last-hour").textContent = number(stats.chatsLastHour);
    const rate = stats.errorRateLastHour;
    byId("error-rate").textContent = rate === null ? "–" : `${(rate * 100).toFixed(1)} %`;
    byId("errors-last-hour").textContent = `${number(stats.errorsLastHour)} failed`;
    byId("queue-depth").textContent = number(stats.queueDepth);
    byId("jobs-running").textContent = `${number(stats.jobsRunning)} running`;
    byId("workers-alive").textContent = number(stats.workersAlive);
    byId("workers-alive").classList.toggle("alarm", stats.workersAlive === 0);
    byId("transcripts-waiting").textContent = number(stats.transcriptsWaiting);
    renderTokens(stats.tokens);
    renderConditions(stats.study);
    byId("chart-minutes").textContent = stats.series.length;
    drawChart(byId("chart"), stats.series);
    const at = new Date(stats.generatedAt * 1000).toLocaleTimeString("en-GB");
    byId("status").textContent = `Updated ${at}; refreshed every ${POLL_MS / 1000} s.`;
  }

  function renderTokens(tokens) {
    byId("tokens-spent").textContent = number(tokens.spent);
    const held = tokens.held ? `, ${number(tokens.held)} held by chats in flight` : "";
    byId("tokens-budget").textContent =
      tokens.cap === null
        ? `no study budget set${held}`
        : `of ${number(tokens.cap)}: ${number(tokens.left)} left${held}`;
  }

  function renderConditions(study) {
    byId("conditions").hidden = !study;
    if (!study) return;
    byId("study-name").textContent = study.name;
    const rows = (study.conditions || []).map((figures) => {
      const row = document.createElement("tr");
      const cells = [figures.condition, figures.assigned, figures.active, figures.saved, figures.tokens];
      cells.forEach((value, index) => {
        const cell = document.createElement(index === 0 ? "th" : "td");
        cell.textContent = index === 0 ? value : number(value);
        row.appendChild(cell);
      });
      return row;
    });
    byId("condition-rows").replaceChildren(...rows);
  }

  function drawChart(canvas, series) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const pad = { left: 40, right: 8, top: 10, bottom: 22 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const top = Math.max(1, ...series.map((m) => m.chats));
    const y = (value) => pad.top + plotH - (value / top) * plotH;
    drawAxes(ctx, pad, plotW, plotH, top, y, series);
    const slot = plotW / Math.max(series.length, 1);
    series.forEach((minute, index) => {
      const x = pad.left + index * slot + slot * 0.15;
      const barW = Math.max(slot * 0.7, 1);
      ctx.fillStyle = COLORS.chats;
      ctx.fillRect(x, y(minute.chats), barW, pad.top + plotH - y(minute.chats));
      ctx.fillStyle = COLORS.errors;
      ctx.fillRect(x, y(minute.errors), barW, pad.top + plotH - y(minute.errors));
    });
    canvas.dataset.drawnMinutes = String(series.length);
  }

  function drawAxes(ctx, pad, plotW, plotH, top, y, series) {
    ctx.strokeStyle = COLORS.grid;
    ctx.fillStyle = COLORS.ink;
    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    for (const value of [0, Math.ceil(top / 2), top]) {
      ctx.beginPath();
      ctx.moveTo(pad.left, Math.round(y(value)) + 0.5);
      ctx.lineTo(pad.left + plotW, Math.round(y(value)) + 0.5);
      ctx.stroke();
      ctx.fillText(String(value), 4, y(value) + 4);
    }
    if (!series.length) return;
    const time = (start) => new Date(start * 1000).toLocaleTimeString("en-GB").slice(0, 5);
    ctx.fillText(time(series[0].start), pad.left, pad.top + plotH + 16);
    const last = time(series[series.length - 1].start);
    ctx.fillText(last, pad.left + plotW - ctx.measureText(last).width, pad.top + plotH + 16);
  }

  document.addEventListener("DOMContentLoaded", () => {
    byId("login-form").addEventListener("submit", logIn);
    byId("logout").addEventListener("click", logOut);
    refresh();
  });
})();
