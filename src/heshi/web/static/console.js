// Heshi console: plain ES module, no build step. Talks to the admin API (/admin/v1)
// with the session cookie; every change sends the session's CSRF secret in a header.
// Text from the server is only ever set as textContent (never parsed as HTML).

const API = "/admin/v1";
const TEXT = {
  zh: {
    "nav.overview": "概览", "nav.keys": "密钥", "nav.audit": "审计", signout: "退出",
    "nav.usage": "用量", "overview.week": "最近 7 天", "usage.requests": "请求",
    "usage.tokens": "token", "usage.errors": "错误", "usage.latency": "平均延迟 ms",
    "usage.since": "起始日期", "usage.until": "截止日期（不含）", "usage.model": "模型",
    "usage.by": "分组", "usage.by.day": "按天", "usage.by.model": "按模型",
    "usage.by.tenant": "按租户", "usage.by.key": "按密钥", "usage.by.reason": "按结果",
    "usage.apply": "查询", "usage.csv": "导出 CSV", "usage.group": "分组",
    "usage.prompt": "输入 token", "usage.completion": "输出 token", "usage.ttft": "平均首 token ms",
    "usage.none": "此范围内没有请求", "chart.title": "{group}：{tokens} token，{requests} 次请求",
    "signin.title": "登录控制台", "signin.token": "管理令牌", "signin.submit": "登录",
    "signin.help": "输入管理令牌（heshi admin tokens create 生成，或网关的 HESHI_ADMIN_TOKEN）。",
    "overview.keys": "有效密钥", "overview.tenants": "租户", "overview.role": "我的角色",
    "keys.id": "ID", "keys.tenant": "租户", "keys.name": "名称", "keys.prefix": "前缀",
    "keys.status": "状态", "keys.rpm": "每分钟请求", "keys.budget": "token 预算",
    "keys.create": "创建密钥", "keys.once.title": "新密钥（只显示这一次）",
    "keys.once.help": "请立即复制保存：关闭后无法再次查看。", "keys.once.close": "我已保存",
    "keys.suspend": "暂停", "keys.resume": "恢复", "keys.revoke": "吊销",
    "keys.confirm.revoke": "吊销后无法恢复，确定吊销？",
    "status.active": "有效", "status.suspended": "已暂停", "status.revoked": "已吊销",
    "audit.verify": "校验审计日志", "audit.export": "导出 CSV", "audit.time": "时间",
    "audit.what": "内容", "audit.intact": "完整：{n} 条记录，无问题",
    "audit.broken": "发现 {n} 个问题：", "role.admin": "管理员", "role.auditor": "审计员",
    lang: "English",
  },
  en: {
    "nav.overview": "Overview", "nav.keys": "Keys", "nav.audit": "Audit", signout: "Sign out",
    "nav.usage": "Usage", "overview.week": "Last 7 days", "usage.requests": "Requests",
    "usage.tokens": "Tokens", "usage.errors": "Errors", "usage.latency": "Mean latency ms",
    "usage.since": "From", "usage.until": "Until (exclusive)", "usage.model": "Model",
    "usage.by": "Group by", "usage.by.day": "day", "usage.by.model": "model",
    "usage.by.tenant": "tenant", "usage.by.key": "key", "usage.by.reason": "outcome",
    "usage.apply": "Apply", "usage.csv": "Export CSV", "usage.group": "Group",
    "usage.prompt": "Input tokens", "usage.completion": "Output tokens", "usage.ttft": "Mean TTFT ms",
    "usage.none": "No requests in this range", "chart.title": "{group}: {tokens} tokens, {requests} requests",
    "signin.title": "Sign in to the console", "signin.token": "Admin token", "signin.submit": "Sign in",
    "signin.help": "Enter an admin token (from heshi admin tokens create, or the gateway's HESHI_ADMIN_TOKEN).",
    "overview.keys": "Active keys", "overview.tenants": "Tenants", "overview.role": "My role",
    "keys.id": "ID", "keys.tenant": "Tenant", "keys.name": "Name", "keys.prefix": "Prefix",
    "keys.status": "Status", "keys.rpm": "Requests/min", "keys.budget": "Token budget",
    "keys.create": "Create key", "keys.once.title": "New key (shown only this once)",
    "keys.once.help": "Copy it now: it cannot be shown again after you close this.",
    "keys.once.close": "I have saved it",
    "keys.suspend": "Suspend", "keys.resume": "Resume", "keys.revoke": "Revoke",
    "keys.confirm.revoke": "A revoked key cannot be restored. Revoke it?",
    "status.active": "active", "status.suspended": "suspended", "status.revoked": "revoked",
    "audit.verify": "Verify the audit log", "audit.export": "Export CSV", "audit.time": "Time",
    "audit.what": "Content", "audit.intact": "Intact: {n} records, no issues",
    "audit.broken": "{n} issues found:", "role.admin": "admin", "role.auditor": "auditor",
    lang: "中文",
  },
};

let lang = localStorage.getItem("heshi.lang") || "zh";
let session = null; // {name, role, csrf}

const $ = (sel) => document.querySelector(sel);
const t = (key, vars = {}) =>
  (TEXT[lang][key] || key).replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  $("#lang").textContent = t("lang");
  if (session) $("#who").textContent = `${session.name} · ${t("role." + session.role)}`;
}

async function call(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && session) headers["x-heshi-csrf"] = session.csrf;
  const response = await fetch(API + path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error?.message || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function show(page) {
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.id !== "page-" + page;
  }
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === "#" + page);
  }
}

async function route() {
  if (!session) { show("signin"); return; }
  const page = (location.hash || "#overview").slice(1);
  const pages = { overview: loadOverview, usage: loadUsage, keys: loadKeys, audit: loadAudit };
  show(pages[page] ? page : "overview");
  await (pages[page] || loadOverview)();
}

const number = (value) => (value == null ? "–" : Math.round(value).toLocaleString());
const isoDay = (date) => date.toISOString().slice(0, 10);

async function loadOverview() {
  const since = new Date(Date.now() - 6 * 86400000);
  const [keys, days] = await Promise.all([
    call("GET", "/keys"),
    call("GET", `/usage?by=day&since=${isoDay(since)}T00:00:00Z`),
  ]);
  $("#ov-keys").textContent = keys.filter((k) => k.status === "active").length;
  $("#ov-tenants").textContent = new Set(keys.map((k) => k.tenant)).size;
  $("#ov-role").textContent = t("role." + session.role);
  const sum = (field) => days.reduce((total, row) => total + row[field], 0);
  const requests = sum("requests");
  $("#ov-requests").textContent = number(requests);
  $("#ov-tokens").textContent = number(sum("total_tokens"));
  $("#ov-errors").textContent = number(sum("errors"));
  const weighted = days.reduce((total, row) => total + (row.mean_latency_ms || 0) * row.requests, 0);
  $("#ov-latency").textContent = requests ? number(weighted / requests) : "–";
  drawChart($("#ov-chart"), days);
}

// A bar chart of total tokens per group, drawn as SVG elements (no library).
function drawChart(box, rows) {
  const svgNS = "http://www.w3.org/2000/svg";
  box.replaceChildren();
  if (!rows.length) {
    const empty = document.createElement("p");
    empty.textContent = t("usage.none");
    box.appendChild(empty);
    return;
  }
  const width = 1000, height = 220, bottom = 24, top = 16;
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const most = Math.max(...rows.map((r) => r.total_tokens), 1);
  const step = width / rows.length;
  rows.forEach((row, i) => {
    const h = ((height - bottom - top) * row.total_tokens) / most;
    const bar = document.createElementNS(svgNS, "rect");
    bar.setAttribute("x", String(i * step + step * 0.15));
    bar.setAttribute("y", String(height - bottom - h));
    bar.setAttribute("width", String(step * 0.7));
    bar.setAttribute("height", String(Math.max(h, 1)));
    bar.dataset.group = row.group ?? "";
    bar.dataset.tokens = String(row.total_tokens);
    const title = document.createElementNS(svgNS, "title");
    title.textContent = t("chart.title", {
      group: row.group ?? "-", tokens: number(row.total_tokens), requests: number(row.requests),
    });
    bar.appendChild(title);
    svg.appendChild(bar);
    if (rows.length <= 31) {
      const label = document.createElementNS(svgNS, "text");
      label.setAttribute("x", String(i * step + step / 2));
      label.setAttribute("y", String(height - 6));
      label.setAttribute("text-anchor", "middle");
      label.textContent = String(row.group ?? "-").slice(-10);
      svg.appendChild(label);
    }
  });
  box.appendChild(svg);
}

function usageQuery(format) {
  const params = new URLSearchParams();
  params.set("since", $("#usage-since").value + "T00:00:00Z");
  if ($("#usage-until").value) params.set("until", $("#usage-until").value + "T00:00:00Z");
  for (const [field, id] of [["tenant", "#usage-tenant"], ["model", "#usage-model"]]) {
    const value = $(id).value.trim();
    if (value) params.set(field, value);
  }
  params.set("by", $("#usage-by").value);
  if (format) params.set("format", format);
  return "/usage?" + params.toString();
}

async function loadUsage(event) {
  if (event) event.preventDefault();
  if (!$("#usage-since").value) $("#usage-since").value = isoDay(new Date(Date.now() - 29 * 86400000));
  $("#usage-csv").href = API + usageQuery("csv");
  try {
    const rows = await call("GET", usageQuery());
    $("#usage-error").textContent = "";
    drawChart($("#usage-chart"), rows);
    const body = $("#usage-table tbody");
    body.replaceChildren();
    for (const row of rows) {
      const tr = document.createElement("tr");
      cell(tr, row.group ?? "-");
      for (const field of ["requests", "prompt_tokens", "completion_tokens", "errors", "mean_latency_ms", "mean_ttft_ms"]) {
        cell(tr, number(row[field]), "num");
      }
      body.appendChild(tr);
    }
  } catch (error) {
    $("#usage-error").textContent = error.message;
  }
}

async function loadKeys() {
  const keys = await call("GET", "/keys");
  const body = $("#keys-table tbody");
  body.replaceChildren();
  for (const key of keys) {
    const row = document.createElement("tr");
    row.dataset.id = key.id;
    cell(row, key.id);
    cell(row, key.tenant);
    cell(row, key.name);
    cell(row, key.prefix + "…");
    cell(row, t("status." + key.status), "status-" + key.status);
    const actions = cell(row, "");
    if (session.role === "admin" && key.status !== "revoked") {
      const toggle = key.status === "active" ? "suspend" : "resume";
      for (const action of [toggle, "revoke"]) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = t("keys." + action);
        button.dataset.action = action;
        button.addEventListener("click", () => changeKey(key.id, action));
        actions.appendChild(button);
      }
    }
    body.appendChild(row);
  }
}

async function changeKey(id, action) {
  if (action === "revoke" && !confirm(t("keys.confirm.revoke"))) return;
  try {
    await call("POST", `/keys/${encodeURIComponent(id)}/${action}`, action === "suspend" ? {} : undefined);
    $("#key-error").textContent = "";
  } catch (error) {
    $("#key-error").textContent = error.message;
  }
  await loadKeys();
}

async function createKey(event) {
  event.preventDefault();
  const body = { tenant: $("#key-tenant").value.trim(), name: $("#key-name").value.trim() };
  const rpm = $("#key-rpm").value, budget = $("#key-budget").value;
  if (rpm) body.rpm = Number(rpm);
  if (budget) body.budget_tokens = Number(budget);
  try {
    const created = await call("POST", "/keys", body);
    $("#key-error").textContent = "";
    $("#key-once-value").textContent = created.key;
    $("#key-once").showModal();
    event.target.reset();
  } catch (error) {
    $("#key-error").textContent = error.message;
  }
  await loadKeys();
}

async function loadAudit() {
  const records = await call("GET", "/audit/records?limit=100");
  const body = $("#audit-table tbody");
  body.replaceChildren();
  for (const record of records) {
    const row = document.createElement("tr");
    cell(row, String(record.seq));
    cell(row, new Date(record.ts).toLocaleString(lang === "zh" ? "zh-CN" : "en"));
    cell(row, record.tenant);
    cell(row, [record.input, record.output].filter(Boolean).join(" → "), "wrap");
    body.appendChild(row);
  }
}

async function verifyAudit() {
  const out = $("#audit-result");
  out.textContent = "…";
  try {
    const report = await call("POST", "/audit/verify");
    out.textContent = report.intact
      ? t("audit.intact", { n: report.records })
      : t("audit.broken", { n: report.issue_count }) + " " + report.issues.map((i) => i.explained).join("; ");
    out.className = report.intact ? "" : "error";
  } catch (error) {
    out.textContent = error.message;
    out.className = "error";
  }
  await loadAudit();
}

function signedIn(data) {
  session = data;
  document.body.classList.toggle("auditor", data.role !== "admin");
  $("#nav").hidden = false;
  $("#signout").hidden = false;
  applyLanguage();
}

async function signIn(event) {
  event.preventDefault();
  try {
    signedIn(await call("POST", "/session", { token: $("#signin-token").value }));
    $("#signin-token").value = "";
    $("#signin-error").textContent = "";
    await route();
  } catch (error) {
    $("#signin-error").textContent = error.message;
  }
}

async function signOut() {
  await call("DELETE", "/session").catch(() => null);
  session = null;
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  $("#who").textContent = "";
  show("signin");
}

async function start() {
  applyLanguage();
  $("#lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("heshi.lang", lang);
    applyLanguage();
    route();
  });
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", signOut);
  $("#key-form").addEventListener("submit", createKey);
  $("#key-once").addEventListener("close", () => { $("#key-once-value").textContent = ""; });
  $("#audit-verify").addEventListener("click", verifyAudit);
  $("#usage-form").addEventListener("submit", loadUsage);
  window.addEventListener("hashchange", route);
  try {
    signedIn(await call("GET", "/session"));
  } catch {
    session = null;
  }
  await route();
}

start();
