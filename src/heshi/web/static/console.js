// Heshi console: plain ES module, no build step. Talks to the admin API (/admin/v1)
// with the session cookie; every change sends the session's CSRF secret in a header.
// Text from the server is only ever set as textContent (never parsed as HTML).

const API = "/admin/v1";
const TEXT = {
  zh: {
    "nav.overview": "概览", "nav.keys": "密钥", "nav.audit": "审计", signout: "退出",
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
  const pages = { overview: loadOverview, keys: loadKeys, audit: loadAudit };
  show(pages[page] ? page : "overview");
  await (pages[page] || loadOverview)();
}

async function loadOverview() {
  const keys = await call("GET", "/keys");
  $("#ov-keys").textContent = keys.filter((k) => k.status === "active").length;
  $("#ov-tenants").textContent = new Set(keys.map((k) => k.tenant)).size;
  $("#ov-role").textContent = t("role." + session.role);
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
  window.addEventListener("hashchange", route);
  try {
    signedIn(await call("GET", "/session"));
  } catch {
    session = null;
  }
  await route();
}

start();
