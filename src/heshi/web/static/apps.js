// The console's application pages: knowledge-base changes (create a base, upload documents
// with progress, ask a base, take and close handoffs) and document jobs (files extracted
// one after another through /v1/docs/extract, a results table, CSV). Plain ES module, no
// build step; console.js passes in what it shares (ctx).

let ctx;
const kbSessions = {}; // one conversation per base: a session belongs to one base
let docsStop = null;
const docsRows = [];

export function initApps(shared) {
  ctx = shared;
  const { $ } = ctx;
  $("#kb-create-form").addEventListener("submit", createBase);
  $("#kb-upload-form").addEventListener("submit", uploadDocuments);
  $("#kb-ask-form").addEventListener("submit", askBase);
  $("#docs-form").addEventListener("submit", runDocs);
  $("#docs-stop").addEventListener("click", () => { if (docsStop) docsStop.stopped = true; });
  $("#docs-csv").addEventListener("click", downloadCsv);
}

// -- knowledge bases --------------------------------------------------------------------

function fill(select, names, labels = {}) {
  const chosen = select.value;
  select.replaceChildren();
  for (const name of names) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = labels[name] ?? name;
    select.appendChild(option);
  }
  if (names.includes(chosen)) select.value = chosen;
}

// Uploads go to any base; questions only to those the playground key may ask (its
// tenant's and the shared ones), as /v1/models lists them for that key.
export async function fillBases(bases) {
  const { $ } = ctx;
  const labels = Object.fromEntries(bases.map((b) => [b.name, `${b.name} (${b.documents})`]));
  fill($("#kb-target"), bases.map((b) => b.name), labels);
  let askable = bases.filter((b) => b.tenant == null).map((b) => b.name);
  const key = ctx.playgroundKey();
  if (key) {
    const response = await fetch("/v1/models", { headers: { authorization: "Bearer " + key } });
    const data = await response.json().catch(() => ({}));
    if (response.ok) {
      askable = (data.data || []).map((m) => m.id).filter((id) => id.startsWith("kb:")).map((id) => id.slice(3));
    }
  }
  fill($("#kb-ask-base"), askable, labels);
}

export function handoffActions(row, handoff, reload) {
  const { cell, t, call, $ } = ctx;
  const actions = cell(row, "");
  if (ctx.role() !== "admin" || handoff.status === "closed") return;
  const moves = handoff.status === "open" ? ["taken", "closed"] : ["closed"];
  for (const status of moves) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.status = status;
    button.textContent = t("kb.move." + status);
    button.addEventListener("click", async () => {
      try {
        await call("POST", `/kb-handoffs/${encodeURIComponent(handoff.id)}`, { status });
        $("#kb-error").textContent = "";
      } catch (error) {
        $("#kb-error").textContent = error.message;
      }
      await reload();
    });
    actions.appendChild(button);
  }
}

async function createBase(event) {
  event.preventDefault();
  const { $, call } = ctx;
  const body = { name: $("#kb-new-name").value.trim() };
  const tenant = $("#kb-new-tenant").value.trim();
  if (tenant) body.tenant = tenant;
  try {
    await call("POST", "/kb", body);
    $("#kb-error").textContent = "";
    event.target.reset();
    await ctx.reloadKnowledge();
    $("#kb-target").value = $("#kb-ask-base").value = body.name;
  } catch (error) {
    $("#kb-error").textContent = error.message;
  }
}

async function uploadDocuments(event) {
  event.preventDefault();
  const { $, t } = ctx;
  const base = $("#kb-target").value;
  const files = [...$("#kb-files").files];
  if (!base || !files.length) return;
  const results = $("#kb-results");
  results.replaceChildren();
  $("#kb-progress-box").hidden = false;
  $("#kb-upload").disabled = true;
  const progress = $("#kb-progress");
  progress.max = files.length;
  progress.value = 0;
  let failed = 0;
  for (const [i, file] of files.entries()) {
    $("#kb-progress-text").textContent = t("kb.progress", { done: i, total: files.length, file: file.name });
    const item = document.createElement("li");
    try {
      const form = new FormData();
      form.append("file", file, file.name);
      const response = await fetch(`${ctx.API}/kb/${encodeURIComponent(base)}/documents`, {
        method: "POST", body: form, credentials: "same-origin",
        headers: { "x-heshi-csrf": ctx.csrf() },
      });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(data.error?.message || response.statusText);
      item.textContent = `${file.name} — ${t("kb.status." + data.status)}` +
        (data.chunks ? ` · ${data.chunks} ${t("kb.chunks")}` : "") + (data.error ? ` · ${data.error}` : "");
      if (data.status === "failed") { item.className = "failed"; failed += 1; }
    } catch (error) {
      item.textContent = `${file.name} — ${error.message}`;
      item.className = "failed";
      failed += 1;
    }
    results.appendChild(item);
    progress.value = i + 1;
  }
  $("#kb-progress-text").textContent = t("kb.done", { total: files.length, failed });
  $("#kb-upload").disabled = false;
  $("#kb-files").value = "";
  await ctx.reloadKnowledge();
}

async function askBase(event) {
  event.preventDefault();
  const { $, t } = ctx;
  const key = await ctx.ensureKey("#kb-error");
  if (!key) return;
  const base = $("#kb-ask-base").value;
  if (!base) return;
  kbSessions[base] ||= "console-" + crypto.randomUUID();
  $("#kb-ask").disabled = true;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { authorization: "Bearer " + key, "content-type": "application/json" },
      body: JSON.stringify({
        model: "kb:" + base, session_id: kbSessions[base],
        messages: [{ role: "user", content: $("#kb-question").value }],
      }),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error?.message || response.statusText);
    $("#kb-error").textContent = "";
    $("#kb-answer").hidden = false;
    $("#kb-answer-text").textContent = data.choices?.[0]?.message?.content ?? "";
    const list = $("#kb-citations");
    list.replaceChildren();
    for (const citation of data.citations || []) {
      const item = document.createElement("li");
      item.textContent = `${citation.doc}: ${citation.text}`;
      list.appendChild(item);
    }
    $("#kb-answer-meta").textContent = [
      data.grounded ? t("kb.grounded") : t("kb.ungrounded"),
      data.handoff ? t("kb.handed") : "",
    ].filter(Boolean).join(" · ");
    if (data.handoff) await ctx.reloadKnowledge();
  } catch (error) {
    $("#kb-error").textContent = error.message;
  } finally {
    $("#kb-ask").disabled = false;
  }
}

// -- document jobs ----------------------------------------------------------------------

// The chat models the playground key may use (knowledge bases cannot extract documents);
// the page makes no key of its own until a job runs.
export async function loadDocsPage() {
  const key = ctx.playgroundKey();
  if (key) await fillDocModels(key);
}

async function fillDocModels(key) {
  const { $ } = ctx;
  if ($("#docs-model").options.length) return;
  const response = await fetch("/v1/models", { headers: { authorization: "Bearer " + key } });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) { $("#docs-error").textContent = data.error?.message || response.statusText; return; }
  for (const model of data.data || []) {
    if (model.id.startsWith("kb:")) continue;
    const option = document.createElement("option");
    option.value = option.textContent = model.id;
    $("#docs-model").appendChild(option);
  }
}

async function runDocs(event) {
  event.preventDefault();
  const { $, t, cell } = ctx;
  const key = await ctx.ensureKey("#docs-error");
  if (!key) return;
  const files = [...$("#docs-files").files];
  if (!files.length) return;
  await fillDocModels(key);
  const schema = $("#docs-schema").value, model = $("#docs-model").value;
  const body = $("#docs-table tbody");
  body.replaceChildren();
  docsRows.length = 0;
  $("#docs-progress-box").hidden = false;
  $("#docs-run").disabled = true;
  $("#docs-stop").disabled = false;
  $("#docs-csv").disabled = true;
  $("#docs-error").textContent = "";
  const progress = $("#docs-progress");
  progress.max = files.length;
  progress.value = 0;
  const job = (docsStop = { stopped: false });
  let failed = 0;
  for (const [i, file] of files.entries()) {
    if (job.stopped) break;
    $("#docs-progress-text").textContent = t("kb.progress", { done: i, total: files.length, file: file.name });
    const row = document.createElement("tr");
    const result = { file: file.name, type: "", status: "", fields: {}, problems: [] };
    try {
      const form = new FormData();
      form.append("file", file, file.name);
      form.append("schema", schema);
      if (model) form.append("model", model);
      const response = await fetch("/v1/docs/extract", {
        method: "POST", body: form, headers: { authorization: "Bearer " + key },
      });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(data.error?.message || response.statusText);
      Object.assign(result, { type: data.type, status: "ok", fields: data.fields || {}, problems: data.problems || [] });
    } catch (error) {
      Object.assign(result, { status: "failed", problems: [{ message: error.message }] });
      failed += 1;
    }
    docsRows.push(result);
    cell(row, result.file);
    cell(row, result.type || "–");
    cell(row, t(result.status === "ok" ? "docs.ok" : "docs.failed"), result.status === "ok" ? "" : "failed");
    const shown = Object.entries(result.fields).filter(([, v]) => v !== null && v !== "" && typeof v !== "object");
    cell(row, shown.map(([k, v]) => `${k}: ${v}`).join("\n"), "wrap");
    cell(row, result.problems.map(problemText).join("\n"), "wrap");
    body.appendChild(row);
    progress.value = i + 1;
  }
  const done = docsRows.length;
  $("#docs-progress-text").textContent = job.stopped
    ? t("docs.stopped", { done, total: files.length })
    : t("kb.done", { total: files.length, failed });
  docsStop = null;
  $("#docs-run").disabled = false;
  $("#docs-stop").disabled = true;
  $("#docs-csv").disabled = done === 0;
}

const problemText = (p) => p.message || `${p.field}: ${p.reason}`;

function csvCell(value) {
  let text = value == null ? "" : typeof value === "object" ? JSON.stringify(value) : String(value);
  // a spreadsheet must not run it as a formula (Excel, WPS: also after spaces, and the
  // full-width signs); a plain number, negative ones included, stays a number
  if (typeof value !== "number" && /^[\s]*[=+\-@＝＋－＠\t\r\n]/.test(text)) text = "'" + text;
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function downloadCsv() {
  const names = [...new Set(docsRows.flatMap((r) => Object.keys(r.fields)))];
  const lines = [["file", "type", "status", ...names, "problems"].map(csvCell).join(",")];
  for (const r of docsRows) {
    const problems = r.problems.map(problemText).join("; ");
    lines.push([r.file, r.type, r.status, ...names.map((n) => r.fields[n]), problems].map(csvCell).join(","));
  }
  const blob = new Blob(["\ufeff" + lines.join("\r\n") + "\r\n"], { type: "text/csv;charset=utf-8" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "heshi-documents.csv";
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000); // after the download started
}
