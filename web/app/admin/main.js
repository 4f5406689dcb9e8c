// The admin console's controller: signs in, then works the case queue, one case and the audit
// log through the admin REST API. The server decides who is an admin: a refused token gets the
// "not an admin" page from the API's own answer (403 not_allowed), nothing is decided here.
import { $, on } from "../dom.js";
import { loadConfig } from "../config.js";
import { REPORT_CATEGORIES } from "../room.js";
import { esc, refusal } from "../view.js";
import { AdminApi } from "./api.js";
import * as V from "./view.js";

const config = loadConfig();
const api = new AdminApi(config.apiBaseUrl);
const TOKEN_KEY = "sohbet.admin.token";
const REPORTS_PER_PAGE = 20;

const state = {
  user: null,
  groups: [],
  queue: { filters: { status: "open", limit: "20" }, cursors: [null], next: null, items: [] },
  audit: { filters: { limit: "20" }, cursors: [null], next: null, items: [] },
  case: null, // the open case: {case, reports, next_cursor}
  evidence: null,
};

// -- messages ------------------------------------------------------------------------------

function showAlert(html) {
  $("#alert").innerHTML = html;
  $("#alert").hidden = false;
}

function clearAlert() {
  $("#alert").hidden = true;
  $("#alert").textContent = "";
}

function show(section) {
  for (const id of ["signin", "not-admin", "queue", "case", "audit"]) $(`#${id}`).hidden = id !== section;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("current", a.dataset.view === section || (section === "case" && a.dataset.view === "queue"));
  }
}

/** A refused admin call: not an admin, signed out, or a plain refusal to show. */
function failed(what, error) {
  if (error.status === 403 && error.code === "not_allowed") {
    notAdmin(error);
    return;
  }
  if (error.status === 401) {
    signOut();
    showAlert(`Your sign-in was refused (${esc(error.detail)}). Sign in again.`);
    return;
  }
  showAlert(refusal(what, error));
}

function notAdmin(error) {
  $("#nav").hidden = true;
  $("#not-admin-text").innerHTML =
    `You are signed in as <strong>${esc(state.user)}</strong>${state.groups.length ? ` (groups: ${state.groups.map(esc).join(", ")})` : ", in no group"}, ` +
    `and you are not an admin. The admin API refused: <code data-code="${esc(error.code)}">${esc(error.code)}</code> — ${esc(error.detail)}.`;
  show("not-admin");
}

// -- signing in ------------------------------------------------------------------------------

async function signIn(token) {
  api.token = token;
  let who;
  try {
    who = await api.whoami();
  } catch (error) {
    api.token = null;
    showAlert(refusal("Signing in", error));
    return;
  }
  clearAlert();
  state.user = who.user_id;
  state.groups = who.groups || [];
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#whoami").textContent = `signed in as ${who.user_id}`;
  $("#sign-out").hidden = false;
  $("#nav").hidden = false;
  await route();
}

function signOut() {
  api.token = null;
  state.user = null;
  state.case = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("#whoami").textContent = "";
  $("#sign-out").hidden = true;
  $("#nav").hidden = true;
  show("signin");
}

// -- routing: #queue, #case/ID, #audit -------------------------------------------------------

async function route() {
  if (!api.token) return show("signin");
  const hash = location.hash.slice(1);
  if (hash.startsWith("case/")) return openCase(decodeURIComponent(hash.slice(5)));
  if (hash === "audit") return loadAudit();
  return loadQueue();
}

// -- the queue -----------------------------------------------------------------------------

async function loadQueue() {
  const q = state.queue;
  const page = q.cursors.length;
  let answer;
  try {
    answer = await api.cases({ ...q.filters, cursor: q.cursors[page - 1] });
  } catch (error) {
    failed("Listing cases", error);
    return;
  }
  clearAlert();
  q.items = answer.data;
  q.next = answer.next_cursor;
  $("#cases tbody").innerHTML = answer.data.length
    ? answer.data.map(V.caseRow).join("")
    : `<tr><td colspan="7" class="muted">No cases match.</td></tr>`;
  $("#cases-pager").innerHTML = V.pager(page, !!q.next);
  show("queue");
}

function filtersFrom(form, names) {
  const data = new FormData(form);
  const out = {};
  for (const name of names) {
    const value = String(data.get(name) || "").trim();
    if (value) out[name] = value;
  }
  return out;
}

// -- one case ------------------------------------------------------------------------------

async function openCase(caseId) {
  $("#conflict").hidden = true;
  $("#case-done").hidden = true;
  await loadCase(caseId);
}

async function loadCase(caseId) {
  let detail;
  let evidence = null;
  let evidenceError = null;
  try {
    [detail, evidence] = await Promise.all([
      api.caseDetail(caseId, { limit: REPORTS_PER_PAGE }),
      api.evidence(caseId).catch((error) => {
        evidenceError = error;
        return null;
      }),
    ]);
  } catch (error) {
    failed("Opening the case", error);
    return false;
  }
  clearAlert();
  state.case = detail;
  state.evidence = evidence;
  renderCase();
  // No evidence route or nothing recorded (404): the case simply has none.
  if (evidenceError && evidenceError.status !== 404) {
    $("#evidence").insertAdjacentHTML("afterbegin", `<p class="alert">${refusal("Loading the evidence", evidenceError)}</p>`);
  }
  show("case");
  return true;
}

function renderCase() {
  const { case: c, reports, next_cursor: next } = state.case;
  $("#case-title").textContent = `Case about ${c.target.type} ${c.target.id}`;
  $("#case-summary").innerHTML = V.caseSummary(c);
  $("#case-action-note").innerHTML = V.actionNote(c);
  $("#action-buttons").innerHTML = V.actionButtons(c);
  const form = $("#case-action");
  form.dataset.caseId = c.id;
  form.dataset.version = String(c.version);
  form.dataset.targetType = c.target.type;
  if (!form.space_id.value || form.dataset.filledFor !== c.id) form.space_id.value = c.latest_space_id || "";
  if (form.dataset.filledFor !== c.id) form.reason.value = "";
  form.dataset.filledFor = c.id;
  $("#case-actions").innerHTML = c.actions.length
    ? c.actions.map(V.actionItem).join("")
    : `<li class="muted">No admin has acted on this case yet.</li>`;
  renderEvidence();
  $("#transcript").innerHTML = V.transcript(state.evidence, c);
  $("#reports").innerHTML = reports.map(V.reportItem).join("");
  $("#reports-pager").innerHTML = next
    ? `<button type="button" class="secondary" data-page="more-reports">More reports</button>`
    : "";
}

/** The links expire within minutes, and a live capture grows: ask again. */
async function refreshEvidence() {
  const caseId = state.case.case.id;
  try {
    state.evidence = await api.evidence(caseId);
  } catch (error) {
    failed("Loading the evidence", error);
    return;
  }
  if (state.case && state.case.case.id === caseId) renderEvidence();
}

function renderEvidence() {
  $("#evidence").innerHTML =
    V.evidence(state.evidence, state.case) +
    (state.evidence ? `<button type="button" class="secondary" data-page="evidence">Fresh links and new parts</button>` : "");
}

async function moreReports() {
  const { case: c, next_cursor: cursor } = state.case;
  try {
    const page = await api.caseDetail(c.id, { limit: REPORTS_PER_PAGE, cursor });
    state.case = { ...page, reports: [...state.case.reports, ...page.reports] };
  } catch (error) {
    failed("Loading more reports", error);
    return;
  }
  renderCase();
}

async function act(form, action) {
  const caseId = form.dataset.caseId;
  const body = { action, reason: form.reason.value.trim(), expected_version: Number(form.dataset.version) };
  if (!body.reason) {
    showAlert("Give a reason: it goes into the audit log (and, for a warning, to the user).");
    form.reason.focus();
    return;
  }
  if (action === "suspend") body.duration_seconds = Number(form.duration_seconds.value);
  if ((action === "remove_from_space" || action === "end_space") && form.dataset.targetType === "user") {
    const spaceId = form.space_id.value.trim();
    if (spaceId) body.space_id = spaceId;
  }
  $("#conflict").hidden = true;
  $("#case-done").hidden = true;
  let answer;
  try {
    answer = await api.act(caseId, body);
  } catch (error) {
    if (error.status === 409 && error.code === "conflict" && error.data && error.data.case) {
      // Someone else acted first: show the case as it is now, and say so plainly.
      await loadCase(caseId);
      $("#conflict").innerHTML = V.conflict(action, error, error.data.case);
      $("#conflict").hidden = false;
      return;
    }
    failed(`${V.actionName(action)}`, error);
    return;
  }
  form.reason.value = "";
  await loadCase(caseId);
  const c = answer.case;
  $("#case-done").innerHTML = `<strong>${esc(V.actionName(action))}</strong> ${answer.replayed ? "was already applied" : "applied"}: the case is ${esc(c.status)} (version ${esc(c.version)}).`;
  $("#case-done").hidden = false;
}

// -- the audit log -------------------------------------------------------------------------

async function loadAudit() {
  const a = state.audit;
  const page = a.cursors.length;
  let answer;
  try {
    answer = await api.audit({ ...a.filters, cursor: a.cursors[page - 1] });
  } catch (error) {
    failed("Reading the audit log", error);
    return;
  }
  clearAlert();
  a.items = answer.data;
  a.next = answer.next_cursor;
  $("#audit-log tbody").innerHTML = answer.data.length
    ? answer.data.map(V.auditRow).join("")
    : `<tr><td colspan="7" class="muted">Nothing in the audit log matches.</td></tr>`;
  $("#audit-pager").innerHTML = V.pager(page, !!a.next);
  show("audit");
}

// -- wiring --------------------------------------------------------------------------------

function setup() {
  if (config.signIn === "token") {
    $("#dev-signin").hidden = true;
    $("#dev-signin-note").hidden = true;
  }
  $("#case-filters").category.insertAdjacentHTML(
    "beforeend",
    REPORT_CATEGORIES.map((c) => `<option>${c}</option>`).join(""),
  );

  on("#dev-signin", "submit", async (form) => {
    try {
      const minted = await api.devToken(form.user.value.trim(), form.admin.checked ? ["admins"] : []);
      await signIn(minted.token);
    } catch (error) {
      showAlert(refusal("Signing in as a dev user", error));
    }
  });
  on("#token-signin", "submit", (form) => signIn(form.token.value.trim()));
  on("#case-filters", "submit", (form) => {
    state.queue.filters = filtersFrom(form, ["status", "category", "target_type", "target_id", "limit"]);
    state.queue.cursors = [null];
    if (location.hash !== "#queue") location.hash = "queue";
    else loadQueue();
  });
  on("#audit-filters", "submit", (form) => {
    const filters = filtersFrom(form, ["target_type", "target_id", "limit"]);
    if (form.since.value) filters.since = `${form.since.value}T00:00:00Z`;
    state.audit.filters = filters;
    state.audit.cursors = [null];
    loadAudit();
  });
  on("#case-action", "submit", (form, event) => act(form, event.submitter ? event.submitter.value : "dismiss"));

  document.addEventListener("click", async (event) => {
    const el = event.target.closest("button[data-page], button[data-action]");
    if (!el) return;
    if (el.dataset.action === "sign-out") return signOut();
    const which = $("#audit").hidden ? state.queue : state.audit;
    const reload = $("#audit").hidden ? loadQueue : loadAudit;
    if (el.dataset.page === "more-reports") return moreReports();
    if (el.dataset.page === "evidence") return refreshEvidence();
    if (el.dataset.page === "next" && which.next) which.cursors.push(which.next);
    else if (el.dataset.page === "prev" && which.cursors.length > 1) which.cursors.pop();
    else return;
    await reload();
  });
  window.addEventListener("hashchange", route);

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  else show("signin");
}

// For people debugging and for the browser tests.
window.sohbetAdmin = { state, api };

setup();
