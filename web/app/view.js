// Rendering: plain functions from state to HTML. Buttons carry data-action (and
// data-user) and the controller handles clicks by delegation.
import { MODERATORS, endedLabel, mutedLabel, myEntry, REACTIONS } from "./room.js";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);

const ROLE_NAMES = { host: "host", cohost: "co-host", speaker: "speaker", listener: "listener" };
// A stage member's audio_state (stage.changed, reason "audio"): what the media service says of
// their audio connection, so a host sees who is really connected. Nothing while it is up.
const AUDIO_NOTES = { left: " · audio off", dropped: " · audio lost" };

function button(action, label, { user = null, cls = "secondary", disabled = false } = {}) {
  const u = user === null ? "" : ` data-user="${esc(user)}"`;
  return `<button type="button" class="${cls}" data-action="${action}"${u}${disabled ? " disabled" : ""}>${esc(label)}</button>`;
}

export function spaceItem(space, me, reminded = new Set()) {
  const when =
    space.state === "scheduled" && space.scheduled_start
      ? `starts ${new Date(space.scheduled_start).toLocaleString()} · ${space.subscriber_count ?? 0} reminders`
      : `${space.listener_count} listening`;
  const actions = [];
  if (space.state === "live") actions.push(button("join", "Join", { user: space.id, cls: "" }));
  if (space.state === "scheduled" && space.creator_id === me) {
    actions.push(button("start", "Start now", { user: space.id, cls: "" }));
    actions.push(button("cancel", "Cancel", { user: space.id }));
  } else if (space.state === "scheduled") {
    actions.push(
      reminded.has(space.id)
        ? button("unremind", "Reminder set ✓ (clear)", { user: space.id })
        : button("remind", "Remind me", { user: space.id, cls: "" }),
    );
  }
  return `<li data-space="${esc(space.id)}"><span><strong>${esc(space.title)}</strong>
    <span class="muted">by ${esc(space.creator_id)} · ${esc(space.state)} · ${esc(when)}</span></span>
    <span>${actions.join(" ")}</span></li>`;
}

/** One person on stage, with the moderation buttons the viewer's role allows. */
export function stageItem(entry, room, level) {
  const me = entry.user_id === room.me;
  const viewerIsMod = MODERATORS.has(room.role);
  const below =
    (room.role === "host" && entry.role !== "host") || (room.role === "cohost" && entry.role === "speaker");
  const mute = mutedLabel(entry);
  const speaking = level > 0.02 && !entry.muted;
  const actions = [];
  if (viewerIsMod && !me && below) {
    if (entry.muted_by !== "host") actions.push(button("speaker.mute", "Mute", { user: entry.user_id }));
    actions.push(button("speaker.remove", "To audience", { user: entry.user_id }));
    actions.push(button("participant.remove", "Remove", { user: entry.user_id }));
  }
  if (room.role === "host" && !me) {
    if (entry.role === "speaker") actions.push(button("cohost.add", "Make co-host", { user: entry.user_id }));
    if (entry.role === "cohost") actions.push(button("cohost.remove", "Remove co-host", { user: entry.user_id }));
  }
  if (!me) actions.push(button("report.open", "Report", { user: entry.user_id }));
  const classes = [me && "me", !entry.present && "away", speaking && "speaking"].filter(Boolean).join(" ");
  return `<li class="${classes}" data-user="${esc(entry.user_id)}"
      data-role="${esc(entry.role)}" data-muted="${entry.muted}" data-muted-by="${esc(entry.muted_by ?? "")}"
      data-audio="${esc(entry.audio_state ?? "")}">
    <div class="who">${esc(entry.user_id)}${me ? " (you)" : ""}
      <span class="role">${ROLE_NAMES[entry.role]}</span></div>
    <div class="mute ${entry.muted_by === "host" ? "host" : ""}">${esc(mute)}${entry.present ? "" : " · away"}${AUDIO_NOTES[entry.audio_state] ?? ""}</div>
    <meter class="level" min="0" max="1" low="0.02" value="${level.toFixed(3)}"
      aria-label="${esc(entry.user_id)} audio level"></meter>
    ${actions.length ? `<div class="actions">${actions.join("")}</div>` : ""}
  </li>`;
}

export function myControls(room) {
  const out = [];
  const entry = myEntry(room);
  if (room.ended || room.gone) {
    out.push(button("back", "Back to spaces", { cls: "" }));
    return out.join("");
  }
  if (room.invitedBy) {
    out.push(`<span class="banner" id="invite">${esc(room.invitedBy)} invites you to speak.</span>`);
    out.push(button("invite.accept", "Accept", { cls: "" }));
    out.push(button("invite.decline", "Decline"));
  }
  if (entry) {
    out.push(
      entry.muted
        ? button("mic.unmute", "Unmute my mic", { cls: "" })
        : button("mic.mute", "Mute my mic", { cls: "" }),
    );
    if (entry.role !== "host") out.push(button("stage.leave", "Leave the stage"));
  } else if (room.handRaised) {
    out.push(button("hand.lower", "Lower my hand", { cls: "" }));
  } else {
    out.push(button("hand.raise", "Raise my hand", { cls: "" }));
  }
  out.push(button("space.leave", "Leave the space"));
  return out.join("");
}

export function banner(room) {
  if (room.gone === "removed") return `<p class="banner bad" id="removed">A moderator removed you from this space.</p>`;
  if (room.gone === "suspended") {
    return `<p class="banner bad" id="cut-off">A moderator suspended your account: you were cut off from this space.</p>`;
  }
  if (room.gone === "replaced") {
    return `<p class="banner bad" id="replaced">You joined this space from another window or device; this one no longer takes part.</p>`;
  }
  if (room.ended) return `<p class="banner bad" id="ended">${esc(endedLabel(room.ended))}</p>`;
  if (room.hostAway) {
    const at = new Date(room.hostAway * 1000).toLocaleTimeString();
    return `<p class="banner" id="host-away">The host lost the connection; the space ends at ${esc(at)} unless they come back.</p>`;
  }
  return "";
}

export function roomMeta(room) {
  const policy = { everyone: "anyone may ask to speak", following: "people the host follows may ask", invited: "by invitation only" }[
    room.settings.speak_policy
  ];
  const you = room.gone ? "you are no longer in it" : `you are ${ROLE_NAMES[room.role] || esc(room.role)}`;
  const badges = [
    room.recording && !room.ended ? `<span class="pill recording" id="recording-badge" title="This space is being recorded">● REC</span>` : "",
    room.captions && !room.ended ? `<span class="pill" id="captions-badge">CC</span>` : "",
  ].join(" ");
  return `${esc(room.space.state)} · ${you} · <span id="listener-count">${esc(
    room.listenerCount,
  )}</span> listening · ${esc(policy || "")} ${badges}`;
}

export function captionsButton(room) {
  return room.captions
    ? button("captions.set", "Turn captions off", { user: "off" })
    : button("captions.set", "Turn captions on", { user: "on" });
}

export function recordingButton(room) {
  return room.recording
    ? button("recording.set", "Stop recording", { user: "off" })
    : button("recording.set", "Record this space", { user: "on" });
}

export function handItem(hand) {
  return `<li data-user="${esc(hand.user_id)}">✋ <strong>${esc(hand.user_id)}</strong>
    ${button("request.approve", "Bring on stage", { user: hand.user_id, cls: "" })}
    ${button("request.deny", "Decline", { user: hand.user_id })}
    ${button("report.open", "Report", { user: hand.user_id })}</li>`;
}

export function reactionButtons() {
  return REACTIONS.map((e) => `<button type="button" data-action="reaction.send" data-emoji="${e}" aria-label="react ${e}">${e}</button>`).join("");
}

/** The last interval's reactions as one line: "🔥 12 · 👏 3". */
export function reactionCounts(rc) {
  if (!rc) return "";
  return Object.entries(rc.counts)
    .map(([emoji, n]) => `<span class="burst">${esc(emoji)} <strong>${esc(String(n))}</strong></span>`)
    .join(" · ");
}

export function reactionItem(r) {
  return `<li>${esc(r.emoji)} ${esc(r.user_id)}</li>`;
}

export function refusal(what, error) {
  return `${esc(what)} was refused: <code data-code="${esc(error.code)}">${esc(error.code)}</code> — ${esc(error.detail ?? error.message)}`;
}

const NOTIFICATION_TEXT = {
  live: (n) => `${n.actor_id} is live: ${n.title}`,
  cancelled: (n) => `Cancelled: ${n.title}`,
  rescheduled: (n) => `${n.title} moved to ${new Date(n.scheduled_start).toLocaleString()}`,
};

/** One entry of the notifications inbox; a live space can be joined from it. */
export function notificationItem(n) {
  const text = (NOTIFICATION_TEXT[n.kind] || ((x) => x.title))(n);
  const join = n.kind === "live" ? ` ${button("join", "Join", { user: n.space_id })}` : "";
  return `<li data-notification="${esc(n.id)}" class="${n.read ? "read" : "unread"}">
    <span>${esc(text)} <span class="muted">${esc(new Date(n.created_at).toLocaleString())}</span></span>${join}</li>`;
}

/** One of my reminders, with its space as it is now. */
export function reminderItem(r) {
  const s = r.space;
  if (!s) return `<li class="muted">${esc(r.space_id)} (gone)</li>`;
  const when = s.state === "scheduled" ? `starts ${new Date(s.scheduled_start).toLocaleString()}` : s.state;
  const action =
    s.state === "live"
      ? button("join", "Join", { user: s.id, cls: "" })
      : s.state === "scheduled"
        ? button("unremind", "Clear", { user: s.id })
        : "";
  return `<li data-reminder="${esc(s.id)}"><span><strong>${esc(s.title)}</strong>
    <span class="muted">by ${esc(s.creator_id)} · ${esc(when)}</span></span><span>${action}</span></li>`;
}
