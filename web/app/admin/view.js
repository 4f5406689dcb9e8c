// The console's rendering: plain functions from the admin API's answers to HTML.
import { esc } from "../view.js";

export const ACTIONS = [
  // action, button label, for cases about: user, space or both
  ["dismiss", "Dismiss", "both"],
  ["warn", "Warn", "user"],
  ["remove_from_space", "Remove from the space", "user"],
  ["end_space", "End the space", "both"],
  ["suspend", "Suspend", "user"],
  ["lift_suspension", "Lift suspension", "user"],
];
const CLOSING = new Set(["dismiss", "warn", "remove_from_space", "end_space", "suspend"]);
const ACTION_NAMES = Object.fromEntries(ACTIONS.map(([a, label]) => [a, label]));
export const actionName = (action) => ACTION_NAMES[action] || action;

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

export const target = (t) => `${esc(t.type)} <strong>${esc(t.id)}</strong>`;

export function caseRow(c) {
  return `<tr data-case="${esc(c.id)}" data-priority="${esc(c.priority)}">
    <td><span class="prio ${esc(c.priority)}">${esc(c.priority)}</span></td>
    <td>${target(c.target)}</td>
    <td>${c.categories.map(esc).join(", ")}</td>
    <td>${esc(c.report_count)} from ${esc(c.reporter_count)}</td>
    <td>${esc(when(c.last_seen_at))}</td>
    <td>${esc(c.status)}${c.resolution ? ` (${esc(actionName(c.resolution))})` : ""}</td>
    <td><a href="#case/${encodeURIComponent(c.id)}" data-open="${esc(c.id)}">Open</a></td>
  </tr>`;
}

export function pager(page, hasMore) {
  const back = page > 1 ? `<button type="button" class="secondary" data-page="prev">Previous page</button>` : "";
  const next = hasMore ? `<button type="button" class="secondary" data-page="next">Next page</button>` : "";
  return `${back}<span class="muted">page ${page}</span>${next}`;
}

function dl(pairs) {
  return pairs.map(([k, v]) => `<dt>${esc(k)}</dt><dd data-field="${esc(k)}">${v}</dd>`).join("");
}

export function caseSummary(c) {
  return dl([
    ["Target", target(c.target)],
    ["Status", `<span id="case-status">${esc(c.status)}</span>${c.resolution ? ` — ${esc(actionName(c.resolution))}` : ""}`],
    ["Priority", `<span class="prio ${esc(c.priority)}">${esc(c.priority)}</span>`],
    ["Categories", c.categories.map(esc).join(", ")],
    ["Reports", `${esc(c.report_count)} from ${esc(c.reporter_count)}: ${c.reporters.map(esc).join(", ")}`],
    ["First report", esc(when(c.first_seen_at))],
    ["Last report", esc(when(c.last_seen_at))],
    ["Closed", esc(when(c.closed_at))],
    ["Latest space", c.latest_space_id ? `<code>${esc(c.latest_space_id)}</code>` : "—"],
    ["Version", `<span id="case-version">${esc(c.version)}</span>`],
  ]);
}

/** The actions this case can take now; the server decides in the end (it refuses the rest). */
export function actionButtons(c) {
  return ACTIONS.filter(([action, , about]) => about === "both" || about === c.target.type)
    .filter(([action]) => c.status === "open" || !CLOSING.has(action))
    .map(
      ([action, label]) =>
        `<button type="submit" name="action" value="${action}" class="${action === "dismiss" || action === "lift_suspension" ? "secondary" : "danger"}">${esc(label)}</button>`,
    )
    .join("");
}

export function actionNote(c) {
  if (c.status === "open") return "The first admin to act closes the case (lifting a suspension does not).";
  return `This case is closed (${esc(actionName(c.resolution))}).${c.target.type === "user" ? " A suspension can still be lifted." : ""}`;
}

function details(d) {
  const out = [];
  if (d.space_id) out.push(`space <code>${esc(d.space_id)}</code>`);
  if (d.duration_seconds) out.push(`for ${esc(duration(d.duration_seconds))}`);
  if (d.suspended_until) out.push(`until ${esc(new Date(d.suspended_until * 1000).toLocaleString())}`);
  return out.join(", ");
}

export function duration(seconds) {
  const units = [
    [86400, "day"],
    [3600, "hour"],
    [60, "minute"],
  ];
  for (const [size, name] of units) {
    if (seconds % size === 0) {
      const n = seconds / size;
      return `${n} ${name}${n === 1 ? "" : "s"}`;
    }
  }
  return `${seconds} seconds`;
}

export function actionItem(a) {
  return `<li data-action="${esc(a.action)}"><strong>${esc(actionName(a.action))}</strong> by ${esc(a.admin_id)}
    at ${esc(when(a.at))}${details(a.details || {}) ? ` (${details(a.details || {})})` : ""}: ${esc(a.reason)}</li>`;
}

function person(p) {
  if (!p) return "—";
  const bits = [esc(p.role)];
  if (p.muted) bits.push("muted");
  if (p.present === false) bits.push("away");
  if (p.removed) bits.push("removed");
  if (p.on_stage_seconds !== undefined && p.on_stage_seconds !== null) bits.push(`on stage ${esc(p.on_stage_seconds)} s`);
  return `<strong>${esc(p.user_id)}</strong> (${bits.join(", ")})`;
}

export function reportItem(r) {
  const s = r.snapshot || {};
  const space = s.space || {};
  const stage = (s.stage || [])
    .map(
      (m) => `<tr><td>${esc(m.user_id)}</td><td>${esc(m.role)}</td><td>${m.muted ? "muted" : "mic on"}</td>
        <td>${m.present ? "present" : "away"}</td><td>${esc(when(m.since))}</td></tr>`,
    )
    .join("");
  return `<li class="card" data-report="${esc(r.id)}">
    <p><strong>${esc(r.reporter_id)}</strong> reported ${target(r.target)} for <strong>${esc(r.category)}</strong>
      at ${esc(when(r.created_at))}${r.space_id ? ` in space <code>${esc(r.space_id)}</code>` : ""}.</p>
    ${r.note ? `<blockquote>${esc(r.note)}</blockquote>` : ""}
    <details class="snapshot" open>
      <summary>The space at report time (${esc(when(s.taken_at))})</summary>
      <p>“${esc(space.title)}” hosted by <strong>${esc(space.host_id)}</strong> · ${esc(space.state)} ·
        ${esc(space.listener_count)} listening · started ${esc(when(space.started_at))} · ${esc(space.speak_policy)}</p>
      <p>Reporter: ${person(s.reporter)} · Reported: ${person(s.target)}</p>
      <table class="grid stage-at-report">
        <thead><tr><th>On stage</th><th>Role</th><th>Mic</th><th>Connection</th><th>Since</th></tr></thead>
        <tbody>${stage || `<tr><td colspan="5" class="muted">nobody</td></tr>`}</tbody>
      </table>
    </details>
  </li>`;
}

export function auditRow(a) {
  return `<tr data-audit="${esc(a.id)}" data-action="${esc(a.action)}">
    <td>${esc(when(a.at))}</td><td>${esc(a.admin_id)}</td><td>${esc(actionName(a.action))}</td>
    <td>${target(a.target)}</td><td>${esc(a.reason)}</td><td>${details(a.details || {})}</td>
    <td>${a.case_id ? `<a href="#case/${encodeURIComponent(a.case_id)}">case</a>` : ""}</td></tr>`;
}

/** The conflict, said plainly: someone else acted first; the case as it is now is shown below. */
export function conflict(tried, error, now) {
  const last = now && now.actions && now.actions.length ? now.actions[now.actions.length - 1] : null;
  const who = last ? ` ${esc(last.admin_id)} chose <strong>${esc(actionName(last.action))}</strong> at ${esc(when(last.at))}.` : "";
  const state = now ? ` The case is now <strong>${esc(now.status)}</strong> (version ${esc(now.version)}).` : "";
  return `<strong>Someone else acted on this case first</strong> (${esc(error.detail)}); your
    <strong>${esc(actionName(tried))}</strong> was not applied.${who}${state} Below is the case as it is now.`;
}

// -- evidence and transcript ---------------------------------------------------------------

const EVIDENCE_STATUS = {
  capturing: "Capturing: the space is still live; the audio so far is below.",
  available: "Recorded audio of the space from the first report on.",
  unavailable: "Evidence unavailable",
};

/** Evidence: the case detail's `evidence` ({status, reason}) and GET /admin/cases/{id}/evidence
 * ({items: presigned audio URLs, short-lived; status; reason}). Neither there: none recorded. */
export function evidence(answer, detail) {
  const summary = (answer && answer.status ? answer : null) || (detail && detail.evidence) || null;
  const items = evidenceItems(answer);
  if (!summary && !items.length) return `<p class="muted" id="no-evidence">No evidence recorded for this case.</p>`;
  let head = "";
  if (summary) {
    const text = EVIDENCE_STATUS[summary.status] || esc(summary.status);
    const reason = summary.reason ? `: ${esc(summary.reason)}` : summary.status === "unavailable" ? "." : "";
    head = `<p id="evidence-status" data-status="${esc(summary.status)}">${text}${reason}</p>`;
  }
  const players = items
    .map(
      (e, i) => `<figure class="evidence-item" data-index="${i}">
      <figcaption>Audio${e.started_at ? ` from ${esc(when(e.started_at))}` : ""}${
        e.ended_at ? ` to ${esc(when(e.ended_at))}` : ""
      }${e.expires_at ? ` <span class="muted">(link valid until ${esc(when(e.expires_at))})</span>` : ""}</figcaption>
      <audio controls preload="metadata" src="${esc(e.url)}"${e.content_type ? ` data-type="${esc(e.content_type)}"` : ""}></audio>
    </figure>`,
    )
    .join("");
  return head + players;
}

export function evidenceItems(answer) {
  const list = (answer && answer.items) || [];
  return list.filter((e) => e && e.url);
}

/** Transcript lines around the report time (within two minutes of it highlighted). */
export function transcript(answer, caseView) {
  const lines = (answer && answer.transcript) || (caseView && caseView.transcript) || [];
  if (!lines.length) return `<p class="muted" id="no-transcript">No transcript for this case.</p>`;
  const reportAt = caseView ? Date.parse(caseView.last_seen_at) : NaN;
  return `<ol class="transcript">${lines
    .map((l) => {
      const at = Date.parse(l.at || l.start || l.started_at || "");
      const near = !Number.isNaN(at) && !Number.isNaN(reportAt) && Math.abs(at - reportAt) <= 120_000;
      return `<li class="${near ? "near" : ""}"><span class="muted">${esc(when(l.at || l.start || l.started_at))}</span>
        <strong>${esc(l.speaker || l.user_id || "")}</strong> ${esc(l.text)}</li>`;
    })
    .join("")}</ol>`;
}
