// The console's application pages: knowledge-base changes (create a base, upload documents
// with progress, ask a base, take and close handoffs) and document jobs (/v1/docs/jobs:
// files extracted on the gateway one after another, progress, results table, CSV). Plain ES module, no
// build step; console.js passes in what it shares (ctx).

let ctx;
const kbSessions = {}; // one conversation per base: a session belongs to one base

export function initApps(shared) {
  ctx = shared;
  const { $ } = ctx;
  $("#kb-create-form").addEventListener("submit", createBase);
  $("#kb-upload-form").addEventListener("submit", uploadDocuments);
  $("#kb-ask-form").addEventListener("submit", askBase);
  $("#docs-form").addEventListener("submit", runDocs);
  $("#docs-stop").addEventListener("click", stopJob);
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
  if (!key) return;
  await fillDocModels(key);
  await listJobs(key);
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

let docsJob = null; // the job shown: {id, key}
let following = 0; // the newest poll loop's number: older loops stop

async function api(key, method, path, body) {
  const headers = { authorization: "Bearer " + key };
  if (body && !(body instanceof FormData)) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body instanceof FormData ? body : body && JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error?.message || response.statusText);
  return data;
}

// A job runs on the gateway: the files are uploaded to it, then extracted one after
// another whether or not this page stays open; the page polls its progress.
async function runDocs(event) {
  event.preventDefault();
  const { $, t } = ctx;
  const key = await ctx.ensureKey("#docs-error");
  if (!key) return;
  const files = [...$("#docs-files").files];
  if (!files.length) return;
  await fillDocModels(key);
  $("#docs-error").textContent = "";
  $("#docs-run").disabled = true;
  try {
    const job = await api(key, "POST", "/v1/docs/jobs", {
      schema: $("#docs-schema").value, model: $("#docs-model").value || undefined,
      name: files.map((f) => f.name).join(", ").slice(0, 200),
    });
    docsJob = { id: job.id, key };
    $("#docs-progress-box").hidden = false;
    for (const [i, file] of files.entries()) {
      $("#docs-progress-text").textContent = t("docs.uploading", { done: i, total: files.length, file: file.name });
      const form = new FormData();
      form.append("file", file, file.name);
      await api(key, "POST", `/v1/docs/jobs/${job.id}/files`, form);
    }
    $("#docs-files").value = "";
    await followJob(job.id, key);
  } catch (error) {
    $("#docs-error").textContent = error.message;
  } finally {
    $("#docs-run").disabled = false;
  }
}

async function followJob(id, key) {
  const { $ } = ctx;
  const mine = ++following;
  $("#docs-stop").disabled = false;
  for (;;) {
    const job = await api(key, "GET", `/v1/docs/jobs/${id}`);
    if (mine !== following) return; // another job (or this one again) was opened since
    showJob(job);
    if (job.finished >= job.files) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  $("#docs-stop").disabled = true;
  await listJobs(key);
}

function showJob(job) {
  const { $, t, cell } = ctx;
  $("#docs-progress-box").hidden = false;
  const progress = $("#docs-progress");
  progress.max = Math.max(job.files, 1);
  progress.value = job.finished;
  $("#docs-progress-text").textContent = job.finished >= job.files
    ? t("kb.done", { total: job.files, failed: job.counts.failed }) +
      (job.counts.cancelled ? ` · ${t("docs.cancelled", { n: job.counts.cancelled })}` : "")
    : t("docs.working", { done: job.finished, total: job.files });
  $("#docs-csv").disabled = job.counts.done + job.counts.failed === 0;
  const body = $("#docs-table tbody");
  body.replaceChildren();
  for (const file of job.data) {
    const row = document.createElement("tr");
    row.dataset.status = file.status;
    cell(row, file.file);
    cell(row, file.type || "–");
    cell(row, t("docs.status." + file.status), file.status === "failed" ? "failed" : "");
    const shown = Object.entries(file.fields || {}).filter(([, v]) => v !== null && v !== "" && typeof v !== "object");
    cell(row, shown.map(([k, v]) => `${k}: ${v}`).join("\n"), "wrap");
    const problems = (file.problems || []).map((p) => `${p.field}: ${p.reason}`);
    if (file.error) problems.push(file.error);
    cell(row, problems.join("\n"), "wrap");
    body.appendChild(row);
  }
}

// The key's recent jobs: they outlive the page, so any of them can be opened again.
async function listJobs(key) {
  const { $, cell, t } = ctx;
  const jobs = await api(key, "GET", "/v1/docs/jobs");
  const body = $("#docs-jobs tbody");
  body.replaceChildren();
  for (const job of jobs.data) {
    const row = document.createElement("tr");
    row.dataset.id = job.id;
    cell(row, new Date(job.created_at).toLocaleString());
    cell(row, job.name || job.id, "wrap");
    cell(row, job.schema);
    cell(row, `${job.finished}/${job.files}`, "num");
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = t("docs.open");
    open.addEventListener("click", () => {
      docsJob = { id: job.id, key };
      followJob(job.id, key).catch((error) => { $("#docs-error").textContent = error.message; });
    });
    cell(row, "").appendChild(open);
    body.appendChild(row);
  }
}

async function stopJob() {
  if (!docsJob) return;
  try {
    await api(docsJob.key, "POST", `/v1/docs/jobs/${docsJob.id}/cancel`);
  } catch (error) {
    ctx.$("#docs-error").textContent = error.message;
  }
}

async function downloadCsv() {
  if (!docsJob) return;
  const response = await fetch(`/v1/docs/jobs/${docsJob.id}/results.csv`, {
    headers: { authorization: "Bearer " + docsJob.key },
  });
  if (!response.ok) { ctx.$("#docs-error").textContent = response.statusText; return; }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = `${docsJob.id}.csv`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000); // after the download started
}
