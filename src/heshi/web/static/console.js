// Heshi console: plain ES module, no build step. Talks to the admin API (/admin/v1)
// with the session cookie; every change sends the session's CSRF secret in a header.
// Text from the server is only ever set as textContent (never parsed as HTML).

import { fillBases, handoffActions, initApps, loadDocsPage } from "./apps.js";

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
    "usage.none": "此范围内没有请求", "nav.playground": "演练场", "usage.cost": "花费",
    "pg.help": "用一个 API 密钥与网关对话（请求像其他请求一样受守护、计量与审计）。",
    "pg.key": "API 密钥", "pg.newkey": "创建 12 小时演练密钥", "pg.models": "载入模型",
    "pg.system": "系统提示（可选）", "pg.input": "你的消息", "pg.tools": "附带示例工具（查询订单）",
    "pg.send": "发送", "pg.stop": "停止", "pg.clear": "清空对话", "pg.user": "你",
    "pg.assistant": "模型", "pg.nokey": "请先填入或创建 API 密钥",
    "pg.stats": "首 token {ttft} ms · {tokens} 个输出 token · {rate} token/s",
    "pg.label": "AIGC 标识", "pg.toolcall": "工具调用", "chart.title": "{group}：{tokens} token，{requests} 次请求",
    "signin.title": "登录控制台", "signin.token": "管理令牌", "signin.submit": "登录",
    "signin.help": "输入管理令牌（heshi admin tokens create 生成，或网关的 HESHI_ADMIN_TOKEN）。",
    "overview.keys": "有效密钥", "overview.tenants": "租户", "overview.role": "我的角色",
    "keys.id": "ID", "keys.tenant": "租户", "keys.name": "名称", "keys.prefix": "前缀",
    "keys.status": "状态", "keys.rpm": "每分钟请求", "keys.budget": "token 预算",
    "keys.budget_cny": "费用预算（元）", "keys.limits": "限额",
    "keys.create": "创建密钥", "keys.once.title": "新密钥（只显示这一次）",
    "keys.once.help": "请立即复制保存：关闭后无法再次查看。", "keys.once.close": "我已保存",
    "keys.suspend": "暂停", "keys.resume": "恢复", "keys.revoke": "吊销",
    "keys.confirm.revoke": "吊销后无法恢复，确定吊销？",
    "status.active": "有效", "status.suspended": "已暂停", "status.revoked": "已吊销",
    "audit.verify": "校验审计日志", "audit.export": "导出 CSV", "audit.time": "时间",
    "audit.what": "内容", "audit.intact": "完整：{n} 条记录，无问题",
    "audit.broken": "发现 {n} 个问题：", "role.admin": "管理员", "role.auditor": "审计员",
    lang: "English", "session.ended": "会话已结束，请重新登录", "nav.models": "模型",
    "models.name": "名称", "models.kind": "类型", "models.memory": "内存", "models.ctx": "上下文",
    "models.slots": "槽位（忙/总）", "models.rate": "token/s", "models.ref": "模型引用（路径、hf:、modelscope:…）",
    "models.load": "加载", "models.unload": "卸载", "models.backends": "远程后端", "models.backend": "后端",
    "models.state": "熔断状态", "models.healthy": "健康", "models.inflight": "进行中",
    "yes": "是", "no": "否", "nav.guard": "防护", "nav.kb": "知识库", "nav.plan": "规划",
    "plan.hardware": "硬件", "plan.workload": "负载", "plan.users": "同时在线用户",
    "plan.context": "上下文 token（可选）", "plan.ttft": "首 token p95 上限（如 2s）", "plan.run": "计算",
    "plan.quant": "量化", "plan.engine": "引擎", "plan.peruser": "单用户 token/s", "plan.total": "总吞吐",
    "plan.maxseqs": "最大并发", "plan.rejected": "更大的模型为何不行", "plan.rejected.all": "为何不行",
    "plan.none": "没有可行配置。", "plan.change": "最小改动：{change}",
    "kb.help": "新建知识库、上传文档，然后在这里或演练场（kb:名称）提问。", "kb.model": "模型名",
    "tenants.title": "租户", "tenants.help": "租户的限额在 heshi.yaml 中设置；花费为累计值（含已清理的账本行）。",
    "tenants.keys": "有效密钥", "tenants.tokens": "累计 token", "tenants.spent": "累计花费",
    "nav.docs": "单据", "kb.tenant.optional": "租户（可选）", "kb.create": "新建知识库",
    "kb.files": "文档（Markdown、TXT、HTML、PDF、OFD、DOCX、XLSX/CSV、图片）", "kb.upload": "上传并导入",
    "kb.question": "问题", "kb.ask": "提问", "kb.progress": "{done}/{total} 正在处理 {file}",
    "kb.done": "完成：{total} 个文件，{failed} 个失败", "kb.status.added": "已新增",
    "kb.status.replaced": "已更新", "kb.status.unchanged": "未变", "kb.status.failed": "失败",
    "kb.grounded": "有出处", "kb.ungrounded": "知识库中没有答案", "kb.handed": "已转人工",
    "kb.move.taken": "接手", "kb.move.closed": "关闭",
    "docs.help": "上传发票、合同、提单、银行流水（PDF、OFD、图片、DOCX…）：文件在网关上逐个抽取字段，关闭页面也会继续；用演练场的密钥（/v1/docs/jobs）。",
    "docs.uploading": "正在上传 {done}/{total}：{file}", "docs.working": "已处理 {done}/{total}",
    "docs.cancelled": "{n} 个已取消", "docs.recent": "最近的任务", "docs.progress": "进度",
    "docs.open": "查看", "docs.status.queued": "排队中", "docs.status.running": "处理中",
    "docs.status.done": "完成", "docs.status.failed": "失败", "docs.status.cancelled": "已取消",
    "docs.schema": "字段定义", "docs.auto": "自动识别", "docs.files": "单据文件", "docs.run": "开始抽取",
    "docs.file": "文件", "docs.type": "类型", "docs.fields": "字段", "docs.problems": "问题",
    "docs.ok": "完成", "docs.failed": "失败", "docs.stopped": "已停止：完成 {done}/{total}",
    "kb.documents": "文档", "kb.chunks": "分块", "kb.updated": "更新", "kb.handoffs": "转人工队列",
    "kb.reason": "原因", "kb.last": "用户最后一句", "guard.days": "最近天数",
    "guard.byrisk": "按 TC260 风险统计的拦截", "guard.risk": "风险", "guard.count": "拦截次数",
    "guard.recent": "最近拦截", "guard.prompt": "请求（已脱敏）", "guard.verdicts": "判定",
    "guard.summary": "防护 {enabled} · 个人信息 {pii} · 输入检查 {inbound} · 输出检查 {outbound} · AIGC 标识 {aigc} · 在最近 {scanned} 条受防护请求中拦截 {blocked} 条",
    "overview.local": "本机硬件 {rate}/小时 × {hours} 小时 = {total}",
    "keys.first": "这是第一个密钥：从现在起，网关的每个 /v1 请求都需要密钥。",
    "usage.utc": "日期按 UTC 计",
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
    "usage.none": "No requests in this range", "nav.playground": "Playground", "usage.cost": "Spend",
    "pg.help": "Chat with the gateway using an API key (guarded, metered and audited like any request).",
    "pg.key": "API key", "pg.newkey": "Create a 12-hour playground key", "pg.models": "Load models",
    "pg.system": "System prompt (optional)", "pg.input": "Your message",
    "pg.tools": "Offer a sample tool (order lookup)", "pg.send": "Send", "pg.stop": "Stop",
    "pg.clear": "Clear the conversation", "pg.user": "You", "pg.assistant": "Model",
    "pg.nokey": "Enter or create an API key first",
    "pg.stats": "first token {ttft} ms · {tokens} output tokens · {rate} tokens/s",
    "pg.label": "AIGC label", "pg.toolcall": "Tool call", "chart.title": "{group}: {tokens} tokens, {requests} requests",
    "signin.title": "Sign in to the console", "signin.token": "Admin token", "signin.submit": "Sign in",
    "signin.help": "Enter an admin token (from heshi admin tokens create, or the gateway's HESHI_ADMIN_TOKEN).",
    "overview.keys": "Active keys", "overview.tenants": "Tenants", "overview.role": "My role",
    "keys.id": "ID", "keys.tenant": "Tenant", "keys.name": "Name", "keys.prefix": "Prefix",
    "keys.status": "Status", "keys.rpm": "Requests/min", "keys.budget": "Token budget",
    "keys.budget_cny": "Spend budget (CNY)", "keys.limits": "Limits",
    "keys.create": "Create key", "keys.once.title": "New key (shown only this once)",
    "keys.once.help": "Copy it now: it cannot be shown again after you close this.",
    "keys.once.close": "I have saved it",
    "keys.suspend": "Suspend", "keys.resume": "Resume", "keys.revoke": "Revoke",
    "keys.confirm.revoke": "A revoked key cannot be restored. Revoke it?",
    "status.active": "active", "status.suspended": "suspended", "status.revoked": "revoked",
    "audit.verify": "Verify the audit log", "audit.export": "Export CSV", "audit.time": "Time",
    "audit.what": "Content", "audit.intact": "Intact: {n} records, no issues",
    "audit.broken": "{n} issues found:", "role.admin": "admin", "role.auditor": "auditor",
    lang: "中文", "session.ended": "The session has ended: sign in again", "nav.models": "Models",
    "models.name": "Name", "models.kind": "Kind", "models.memory": "Memory", "models.ctx": "Context",
    "models.slots": "Slots (busy/all)", "models.rate": "tokens/s", "models.ref": "Model ref (path, hf:, modelscope:…)",
    "models.load": "Load", "models.unload": "Unload", "models.backends": "Remote backends", "models.backend": "Backend",
    "models.state": "Breaker", "models.healthy": "Healthy", "models.inflight": "In flight",
    "yes": "yes", "no": "no", "nav.guard": "Guard", "nav.kb": "Knowledge", "nav.plan": "Plan",
    "plan.hardware": "Hardware", "plan.workload": "Workload", "plan.users": "Users at once",
    "plan.context": "Context tokens (optional)", "plan.ttft": "TTFT p95 limit (e.g. 2s)", "plan.run": "Calculate",
    "plan.quant": "Quantization", "plan.engine": "Engine", "plan.peruser": "tokens/s per user",
    "plan.total": "Total tokens/s", "plan.maxseqs": "Max sequences",
    "plan.rejected": "Why larger models were rejected", "plan.rejected.all": "Why each was rejected", "plan.none": "Nothing fits.",
    "plan.change": "Smallest change: {change}",
    "kb.help": "Create a base, upload documents, then ask it here or in the playground (kb:NAME).",
    "tenants.title": "Tenants", "tenants.help": "Tenant limits are set in heshi.yaml; spend is lifetime (pruned ledger rows included).",
    "tenants.keys": "Active keys", "tenants.tokens": "Tokens to date", "tenants.spent": "Spend to date",
    "nav.docs": "Documents", "kb.tenant.optional": "Tenant (optional)", "kb.create": "Create base",
    "kb.files": "Documents (Markdown, TXT, HTML, PDF, OFD, DOCX, XLSX/CSV, images)", "kb.upload": "Upload and ingest",
    "kb.question": "Question", "kb.ask": "Ask", "kb.progress": "{done}/{total}: working on {file}",
    "kb.done": "Done: {total} files, {failed} failed", "kb.status.added": "added",
    "kb.status.replaced": "replaced", "kb.status.unchanged": "unchanged", "kb.status.failed": "failed",
    "kb.grounded": "grounded in the sources", "kb.ungrounded": "not in the knowledge base",
    "kb.handed": "handed to a person", "kb.move.taken": "Take", "kb.move.closed": "Close",
    "docs.help": "Upload invoices, contracts, bills of lading, bank statements (PDF, OFD, images, DOCX…): the gateway extracts their fields one file after another, and goes on if this page closes; with the playground key (/v1/docs/jobs).",
    "docs.uploading": "Uploading {done}/{total}: {file}", "docs.working": "{done}/{total} processed",
    "docs.cancelled": "{n} cancelled", "docs.recent": "Recent jobs", "docs.progress": "Progress",
    "docs.open": "Open", "docs.status.queued": "queued", "docs.status.running": "running",
    "docs.status.done": "done", "docs.status.failed": "failed", "docs.status.cancelled": "cancelled",
    "docs.schema": "Schema", "docs.auto": "Detect", "docs.files": "Document files", "docs.run": "Extract",
    "docs.file": "File", "docs.type": "Type", "docs.fields": "Fields", "docs.problems": "Problems",
    "docs.ok": "done", "docs.failed": "failed", "docs.stopped": "Stopped: {done}/{total} done",
    "kb.model": "Model name", "kb.documents": "Documents", "kb.chunks": "Chunks",
    "kb.updated": "Updated", "kb.handoffs": "Handoff queue", "kb.reason": "Reason",
    "kb.last": "User's last words", "guard.days": "Last days",
    "guard.byrisk": "Blocks by TC260 risk", "guard.risk": "Risk", "guard.count": "Blocks",
    "guard.recent": "Recent blocks", "guard.prompt": "Request (PII masked)", "guard.verdicts": "Verdicts",
    "guard.summary": "guard {enabled} · personal information {pii} · inbound {inbound} · outbound {outbound} · AIGC labels {aigc} · {blocked} blocked of the last {scanned} guarded requests",
    "overview.local": "local hardware {rate}/h × {hours} h = {total}",
    "keys.first": "This was the first key: from now on every /v1 request to the gateway needs a key.",
    "usage.utc": "Dates are UTC",
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

// calls in flight: the page says aria-busy (and shows a progress cursor) until the last returns
let pending = 0;
function busy(step) {
  pending += step;
  document.body.setAttribute("aria-busy", String(pending > 0));
}

async function call(method, path, body) {
  busy(1);
  try {
    return await request(method, path, body);
  } finally {
    busy(-1);
  }
}

async function request(method, path, body) {
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
  const pages = {
    overview: loadOverview, usage: loadUsage, keys: loadKeys, audit: loadAudit,
    playground: loadPlayground, models: loadModelsPage, guard: loadGuard, kb: loadKnowledge,
    plan: loadPlan, docs: loadDocsPage,
  };
  show(pages[page] ? page : "overview");
  try {
    await (pages[page] || loadOverview)();
  } catch (error) {
    if (error.status === 401) { ended(); return; } // the session ended elsewhere
    const box = document.querySelector(`#page-${page} .error`) || $("#key-error");
    box.textContent = error.message;
  }
}

const number = (value) => (value == null ? "–" : Math.round(value).toLocaleString());
let currency = "CNY";
const money = (value) =>
  value == null ? "–" : `${currency} ${value.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 4 })}`;
const isoDay = (date) => date.toISOString().slice(0, 10);

async function loadOverview() {
  const since = new Date(Date.now() - 6 * 86400000);
  const [keys, days, pricing] = await Promise.all([
    call("GET", "/keys"),
    call("GET", `/usage?by=day&since=${isoDay(since)}T00:00:00Z`),
    call("GET", "/pricing"),
  ]);
  currency = pricing.currency;
  const priced = days.filter((row) => row.cost != null);
  $("#ov-cost").textContent = priced.length ? money(priced.reduce((a, r) => a + r.cost, 0)) : "–";
  const hours = 7 * 24;
  $("#ov-local").textContent = pricing.local_cost_per_hour == null ? "" : t("overview.local", {
    rate: money(pricing.local_cost_per_hour), hours, total: money(pricing.local_cost_per_hour * hours),
  });
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
      cell(tr, money(row.cost), "num");
      body.appendChild(tr);
    }
  } catch (error) {
    $("#usage-error").textContent = error.message;
  }
}

async function loadTenants() {
  const tenants = await call("GET", "/tenants");
  const body = $("#tenants-table tbody");
  body.replaceChildren();
  const share = (used) => (used == null ? "" : ` (${Math.round(used * 100)}%)`);
  for (const tenant of tenants) {
    const row = document.createElement("tr");
    row.dataset.name = tenant.name;
    cell(row, tenant.name);
    cell(row, limitsText(tenant));
    cell(row, number(tenant.keys.active), "num");
    cell(row, number(tenant.spent_tokens) + share(tenant.budget_tokens_used), "num");
    cell(row, money(tenant.spent_cny) + share(tenant.budget_cny_used), "num");
    body.appendChild(row);
  }
}

async function loadKeys() {
  loadTenants().catch((error) => { $("#key-error").textContent = error.message; });
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
    cell(row, limitsText(key));
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

function limitsText(key) {
  const parts = [];
  if (key.rpm != null) parts.push(`${number(key.rpm)} rpm`);
  if (key.tpm != null) parts.push(`${number(key.tpm)} tpm`);
  if (key.budget_tokens != null) parts.push(`${number(key.budget_tokens)} tokens`);
  if (key.budget_cny != null) parts.push(`¥${key.budget_cny.toFixed(2)}`);
  return parts.join(" · ") || "–";
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
  const budgetCny = $("#key-budget-cny").value;
  if (rpm) body.rpm = Number(rpm);
  if (budget) body.budget_tokens = Number(budget);
  if (budgetCny) body.budget_cny = Number(budgetCny);
  try {
    const created = await call("POST", "/keys", body);
    $("#key-error").textContent = "";
    $("#key-once-value").textContent = created.key;
    $("#key-first").textContent = created.first_key ? t("keys.first") : "";
    $("#key-once").showModal();
    event.target.reset();
  } catch (error) {
    $("#key-error").textContent = error.message;
  }
  await loadKeys();
}

const mib = (bytes) => (bytes == null ? "–" : `${Math.round(bytes / 1048576).toLocaleString()} MiB`);

async function loadModelsPage() {
  const [models, health] = await Promise.all([call("GET", "/models"), call("GET", "/health")]);
  const body = $("#models-table tbody");
  body.replaceChildren();
  for (const model of models) {
    const row = document.createElement("tr");
    row.dataset.name = model.name;
    cell(row, model.name);
    cell(row, model.kind + (model.thinking ? " (thinking)" : ""));
    cell(row, mib(model.memory_bytes), "num");
    cell(row, number(model.context_length), "num");
    cell(row, `${model.slots_busy}/${model.slots ?? "–"}` + (model.requests_waiting ? ` +${model.requests_waiting}` : ""), "num");
    cell(row, model.tokens_per_second == null ? "–" : model.tokens_per_second.toFixed(1), "num");
    const actions = cell(row, "");
    if (session.role === "admin") {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = t("models.unload");
      button.addEventListener("click", async () => {
        try { await call("DELETE", `/models/${encodeURIComponent(model.name)}`); $("#models-error").textContent = ""; }
        catch (error) { $("#models-error").textContent = error.message; }
        await loadModelsPage();
      });
      actions.appendChild(button);
    }
    body.appendChild(row);
  }
  const backends = $("#backends-table tbody");
  backends.replaceChildren();
  for (const [name, state] of Object.entries(health.backends || {})) {
    const row = document.createElement("tr");
    cell(row, name);
    cell(row, state.state);
    cell(row, t(state.healthy ? "yes" : "no"));
    cell(row, String(state.in_flight), "num");
    backends.appendChild(row);
  }
}

async function loadModel(event) {
  event.preventDefault();
  try {
    await call("POST", "/models", { model: $("#models-ref").value.trim(), name: $("#models-name").value.trim() });
    $("#models-error").textContent = "";
    event.target.reset();
  } catch (error) {
    $("#models-error").textContent = error.message;
  }
  await loadModelsPage();
}

async function loadGuard(event) {
  if (event) event.preventDefault();
  const tenant = $("#guard-tenant").value.trim();
  const days = Math.min(Math.max(Number($("#guard-days").value) || 7, 1), 365);
  const since = new Date(Date.now() - days * 86400000).toISOString();
  const which = tenant ? `&tenant=${encodeURIComponent(tenant)}` : "";
  try {
    const [settings, found] = await Promise.all([
      call("GET", "/guard/settings" + (tenant ? `?tenant=${encodeURIComponent(tenant)}` : "")),
      call("GET", `/guard/blocks?since=${encodeURIComponent(since)}${which}`),
    ]);
    $("#guard-error").textContent = "";
    const g = settings.guard, on = (value) => t(value ? "yes" : "no");
    $("#guard-settings").textContent = t("guard.summary", {
      enabled: on(g.enabled), pii: g.pii, inbound: on(g.inbound), outbound: on(g.outbound),
      aigc: on(settings.aigc.enabled), scanned: found.scanned, blocked: found.blocked,
    });
    const risks = $("#guard-risks tbody");
    risks.replaceChildren();
    for (const [risk, count] of Object.entries(found.by_risk)) {
      const row = document.createElement("tr");
      cell(row, risk);
      cell(row, String(count), "num");
      risks.appendChild(row);
    }
    const recent = $("#guard-recent tbody");
    recent.replaceChildren();
    for (const record of found.recent) {
      const row = document.createElement("tr");
      cell(row, new Date(record.ts).toLocaleString(lang === "zh" ? "zh-CN" : "en"));
      cell(row, record.tenant);
      cell(row, record.input, "wrap");
      cell(row, record.verdicts.map((v) => `${v.risk} ${v.category} → ${v.action}`).join("; "), "wrap");
      recent.appendChild(row);
    }
  } catch (error) {
    if (error.status === 401) throw error;
    $("#guard-error").textContent = error.message;
  }
}

async function loadKnowledge() {
  const [bases, handoffs] = await Promise.all([call("GET", "/kb"), call("GET", "/kb-handoffs?limit=100")]);
  const when = (iso) => new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en");
  const table = $("#kb-table tbody");
  table.replaceChildren();
  for (const base of bases) {
    const row = document.createElement("tr");
    cell(row, base.name);
    cell(row, base.model);
    cell(row, base.tenant ?? "*");
    cell(row, number(base.documents), "num");
    cell(row, number(base.chunks), "num");
    cell(row, when(base.updated_at));
    table.appendChild(row);
  }
  await fillBases(bases);
  const queue = $("#handoffs-table tbody");
  queue.replaceChildren();
  for (const handoff of handoffs) {
    const row = document.createElement("tr");
    cell(row, when(handoff.created_at));
    cell(row, handoff.kb);
    cell(row, handoff.reason);
    cell(row, handoff.status);
    const last = [...handoff.conversation].reverse().find((m) => m.role === "user");
    cell(row, last ? last.content : "", "wrap");
    handoffActions(row, handoff, loadKnowledge);
    queue.appendChild(row);
  }
}

async function loadPlan() {
  const select = $("#plan-workload");
  if (select.options.length) return;
  for (const preset of await call("GET", "/plan/workloads")) {
    const option = document.createElement("option");
    option.value = preset.name;
    option.textContent = `${preset.name} · ${preset.description}`;
    select.appendChild(option);
  }
}

async function runPlan(event) {
  event.preventDefault();
  const body = {
    hardware: $("#plan-hardware").value.trim(), workload: $("#plan-workload").value,
    concurrency: Number($("#plan-users").value) || 1,
  };
  if ($("#plan-context").value) body.context = Number($("#plan-context").value);
  if ($("#plan-ttft").value.trim()) body.ttft_p95 = $("#plan-ttft").value.trim();
  $("#plan-error").textContent = "";
  $("#plan-summary").textContent = "…";
  try {
    const result = await call("POST", "/plan", body);
    const level = result.service_level || {};
    $("#plan-summary").textContent = `${result.hardware} · ${result.workload.name} · ${result.concurrency} × ${result.context}`
      + (level.min_tokens_per_s ? ` · ≥ ${level.min_tokens_per_s} tok/s/user` : "")
      + (level.ttft_p95_s ? ` · TTFT p95 ≤ ${level.ttft_p95_s} s` : "")
      + (result.options.length ? "" : " · " + t("plan.none"))
      + (result.smallest_change ? " · " + t("plan.change", { change: result.smallest_change }) : "");
    const rows = $("#plan-options tbody");
    rows.replaceChildren();
    for (const option of result.options) {
      const row = document.createElement("tr");
      cell(row, option.model + (option.published_checkpoint ? "" : " *"));
      cell(row, option.quant);
      cell(row, option.engine);
      cell(row, String(option.tensor_parallel) + (option.replicas > 1 ? ` ×${option.replicas}` : ""), "num");
      const fixed = (value, digits) => (value == null ? "?" : value.toFixed(digits));
      cell(row, fixed(option.per_user_tokens_per_s, 1), "num");
      cell(row, fixed(option.aggregate_tokens_per_s, 1), "num");
      cell(row, fixed(option.ttft_p95_s, 2), "num");
      cell(row, String(option.max_concurrent_sequences), "num");
      cell(row, fixed(option.quality, 1), "num");
      cell(row, fixed(option.ceval, 1), "num");
      rows.appendChild(row);
    }
    const title = $("#plan-rejected-title");
    title.dataset.i18n = result.options.length ? "plan.rejected" : "plan.rejected.all";
    title.textContent = t(title.dataset.i18n);
    const list = $("#plan-rejected");
    list.replaceChildren();
    for (const option of result.rejected) {
      const item = document.createElement("li");
      item.textContent = `${option.model} ${option.quant} (${option.engine} ×${option.tensor_parallel}): ${option.reasons.join("; ")}`;
      list.appendChild(item);
    }
  } catch (error) {
    $("#plan-summary").textContent = "";
    $("#plan-error").textContent = error.message;
  }
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

// -- playground: the browser calls /v1 itself, with an API key, and reads the SSE stream

const SAMPLE_TOOL = {
  type: "function",
  function: {
    name: "lookup_order",
    description: "查询订单状态 / look up an order's status",
    parameters: {
      type: "object",
      properties: { order_id: { type: "string", description: "订单号 / order number" } },
      required: ["order_id"],
    },
  },
};
let history = [];
let controller = null;

function playgroundKey() {
  return $("#pg-key").value.trim();
}

async function loadPlayground() {
  if (!$("#pg-key").value) $("#pg-key").value = sessionStorage.getItem("heshi.pgkey") || "";
  if (playgroundKey() && !$("#pg-model").options.length) await loadModels();
}

// The playground's key, made now when there is none and the signed-in role may make one.
async function ensureKey(errorBox) {
  if (!$("#pg-key").value) $("#pg-key").value = sessionStorage.getItem("heshi.pgkey") || "";
  if (!playgroundKey() && session.role === "admin") await newPlaygroundKey();
  if (!playgroundKey()) $(errorBox).textContent = $("#pg-error").textContent || t("pg.nokey");
  return playgroundKey();
}

async function newPlaygroundKey() {
  try {
    const expires = new Date(Date.now() + 12 * 3600000).toISOString();
    const name = ("console " + session.name).slice(0, 64);
    const created = await call("POST", "/keys", { tenant: "playground", name, expires_at: expires });
    $("#pg-key").value = created.key;
    sessionStorage.setItem("heshi.pgkey", created.key); // this tab only, gone when it closes
    $("#pg-error").textContent = "";
    await loadModels();
  } catch (error) {
    $("#pg-error").textContent = error.message;
  }
}

async function loadModels() {
  if (!playgroundKey()) { $("#pg-error").textContent = t("pg.nokey"); return; }
  const response = await fetch("/v1/models", { headers: { authorization: "Bearer " + playgroundKey() } });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) { $("#pg-error").textContent = data.error?.message || response.statusText; return; }
  $("#pg-error").textContent = "";
  const select = $("#pg-model");
  select.replaceChildren();
  for (const model of data.data || []) {
    const option = document.createElement("option");
    option.value = option.textContent = model.id;
    select.appendChild(option);
  }
}

function turn(role) {
  const box = document.createElement("div");
  box.className = "turn " + role;
  const who = document.createElement("span");
  who.className = "role";
  who.textContent = t(role === "user" ? "pg.user" : "pg.assistant");
  const text = document.createElement("span");
  text.className = "text";
  box.append(who, text);
  $("#pg-conversation").appendChild(box);
  return box;
}

async function send(event) {
  event.preventDefault();
  if (!playgroundKey()) { $("#pg-error").textContent = t("pg.nokey"); return; }
  const content = $("#pg-input").value;
  turn("user").querySelector(".text").textContent = content;
  history.push({ role: "user", content });
  $("#pg-input").value = "";
  const messages = $("#pg-system").value.trim()
    ? [{ role: "system", content: $("#pg-system").value.trim() }, ...history]
    : history;
  const body = { model: $("#pg-model").value, messages, stream: true, stream_options: { include_usage: true } };
  if ($("#pg-tools-on").checked) body.tools = [SAMPLE_TOOL];
  const answer = turn("assistant");
  const text = answer.querySelector(".text");
  controller = new AbortController();
  $("#pg-stop").disabled = false;
  $("#pg-send").disabled = true;
  $("#pg-error").textContent = "";
  const started = performance.now();
  let firstByte = null, firstShown = null, usage = null;
  const calls = [];
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", signal: controller.signal,
      headers: { authorization: "Bearer " + playgroundKey(), "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new Error(data.error?.message || response.statusText);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (firstByte === null) firstByte = performance.now();
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
          const chunk = JSON.parse(line.slice(6));
          if (chunk.error) throw new Error(chunk.error.message);
          if (chunk.usage) usage = chunk.usage;
          if (chunk.AIGC) showLabel(answer, chunk.AIGC);
          for (const choice of chunk.choices || []) {
            const delta = choice.delta || {};
            if (delta.content) {
              text.textContent += delta.content;
              if (firstShown === null) {
                firstShown = performance.now();
                answer.dataset.firstByteMs = String(firstByte - started);
                answer.dataset.firstShownMs = String(firstShown - started);
              }
            }
            for (const call of delta.tool_calls || []) {
              const slot = (calls[call.index ?? 0] ||= { name: "", arguments: "" });
              if (call.function?.name) slot.name += call.function.name;
              if (call.function?.arguments) slot.arguments += call.function.arguments;
            }
          }
        }
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") $("#pg-error").textContent = error.message;
  } finally {
    controller = null;
    $("#pg-stop").disabled = true;
    $("#pg-send").disabled = false;
  }
  if (calls.length) {
    const tools = document.createElement("div");
    tools.className = "tools";
    tools.textContent = calls.map((c) => `${t("pg.toolcall")}: ${c.name}(${c.arguments})`).join("\n");
    answer.appendChild(tools);
  }
  history.push({ role: "assistant", content: text.textContent });
  if (usage && firstShown !== null) {
    const seconds = (performance.now() - firstShown) / 1000;
    $("#pg-stats").textContent = t("pg.stats", {
      ttft: Math.round(firstShown - started), tokens: usage.completion_tokens,
      rate: seconds > 0 ? (usage.completion_tokens / seconds).toFixed(1) : "–",
    });
  }
}

function showLabel(answer, aigc) {
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = `${t("pg.label")}: ${JSON.stringify(aigc)}`;
  answer.appendChild(label);
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

function ended() {
  session = null;
  sessionStorage.removeItem("heshi.pgkey");
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  $("#who").textContent = "";
  $("#signin-error").textContent = t("session.ended");
  show("signin");
}

async function signOut() {
  await call("DELETE", "/session").catch(() => null);
  session = null;
  sessionStorage.removeItem("heshi.pgkey");
  $("#pg-key").value = "";
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
  // the key leaves the page as the dialog closes (Escape included)
  const forgetKey = () => { $("#key-once-value").textContent = ""; };
  $("#key-once-close").addEventListener("click", forgetKey);
  $("#key-once").addEventListener("close", forgetKey);
  $("#audit-verify").addEventListener("click", verifyAudit);
  $("#usage-form").addEventListener("submit", loadUsage);
  $("#models-form").addEventListener("submit", loadModel);
  $("#guard-form").addEventListener("submit", loadGuard);
  $("#plan-form").addEventListener("submit", runPlan);
  $("#pg-new-key").addEventListener("click", newPlaygroundKey);
  $("#pg-models").addEventListener("click", loadModels);
  $("#pg-form").addEventListener("submit", send);
  $("#pg-stop").addEventListener("click", () => controller?.abort());
  $("#pg-clear").addEventListener("click", () => { history = []; $("#pg-conversation").replaceChildren(); });
  initApps({
    $, call, cell, t, API, ensureKey, reloadKnowledge: loadKnowledge,
    playgroundKey: () => playgroundKey() || sessionStorage.getItem("heshi.pgkey") || "",
    csrf: () => session?.csrf ?? "", role: () => session?.role,
  });
  window.addEventListener("hashchange", route);
  try {
    signedIn(await call("GET", "/session"));
  } catch {
    session = null;
  }
  await route();
}

start();
