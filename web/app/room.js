// The state of the space the user is in, and how snapshots and events change it.
// Plain data and pure functions: the view renders it, the controller acts on it.

export const MODERATORS = new Set(["host", "cohost"]);
export const REACTIONS = ["👏", "❤️", "😂", "😮", "😢", "🔥", "💯", "👍", "👎", "🙏", "🎉", "✋"];
export const REPORT_CATEGORIES = [
  "spam",
  "harassment",
  "hate",
  "violence",
  "self_harm",
  "sexual_content",
  "impersonation",
  "other",
];

export function roleIn(stage, userId) {
  const entry = stage.find((m) => m.user_id === userId);
  return entry ? entry.role : "listener";
}

export function myEntry(room) {
  return room.stage.find((m) => m.user_id === room.me) || null;
}

/** Whether the user's uplink should be live: on stage and not muted by a moderator. */
export function maySend(room) {
  const entry = myEntry(room);
  return entry !== null && entry.muted_by !== "host";
}

export function fromSnapshot(me, data, previous = null) {
  const space = data.space || {};
  return {
    me,
    spaceId: space.id,
    space,
    role: data.role,
    seq: data.seq,
    stage: data.stage || space.stage || [],
    listenerCount: data.listener_count ?? space.listener_count ?? 0,
    hands: data.hands || [],
    settings: { title: space.title, speak_policy: space.speak_policy, handover: !!space.handover },
    recording: !!space.recording, // everyone sees the badge while the host records
    captions: !!space.captions,
    handRaised: previous ? previous.handRaised && data.role === "listener" : false,
    invitedBy: previous ? previous.invitedBy : null,
    hostAway: previous ? previous.hostAway : null,
    ended: null,
    gone: null, // why this page no longer takes part: removed, replaced
    reactions: previous ? previous.reactions : [],
    reactionCounts: previous ? previous.reactionCounts : null,
    notices: previous ? previous.notices : [],
  };
}

const MAX_REACTIONS = 20;
const MAX_NOTICES = 6;

function notice(room, text) {
  return [...room.notices, { at: Date.now(), text }].slice(-MAX_NOTICES);
}

/** The room after `ev`; a new object, `room` is untouched. */
export function applyEvent(room, ev) {
  const r = { ...room };
  switch (ev.event) {
    case "stage.changed": {
      r.stage = ev.stage;
      r.role = roleIn(ev.stage, r.me);
      if (r.role !== "listener") {
        r.handRaised = false;
        r.invitedBy = null;
      }
      if (ev.user_id) r.hands = r.hands.filter((h) => h.user_id !== ev.user_id);
      r.notices = notice(r, describeStageChange(ev, r.me));
      break;
    }
    case "listeners.count":
      r.listenerCount = ev.listener_count;
      break;
    case "hand.raised":
      if (!r.hands.some((h) => h.user_id === ev.user_id)) {
        r.hands = [...r.hands, { user_id: ev.user_id, raised_at: new Date().toISOString() }];
      }
      break;
    case "hand.lowered":
      r.hands = r.hands.filter((h) => h.user_id !== ev.user_id);
      break;
    case "hand.denied":
      r.handRaised = false;
      r.notices = notice(r, "Your request to speak was declined.");
      break;
    case "speaker.invited":
      r.invitedBy = ev.by;
      break;
    case "invite.declined":
      r.notices = notice(r, `${ev.user_id} declined the invitation to speak.`);
      break;
    case "participant.removed":
      r.gone = ev.reason === "suspended" ? "suspended" : "removed";
      break;
    case "session.replaced":
      r.gone = "replaced";
      break;
    case "reactions": {
      // One event per interval: counts per emoji since the last one, and a few of the senders.
      const at = Date.now();
      const senders = (ev.recent || []).slice().reverse().map((x) => ({ user_id: x.user_id, emoji: x.emoji, at }));
      r.reactions = [...r.reactions, ...senders].slice(-MAX_REACTIONS);
      r.reactionCounts = { counts: ev.counts || {}, total: ev.total || 0, at };
      break;
    }
    case "settings.changed":
      r.settings = { ...r.settings, ...ev.settings };
      r.space = { ...r.space, ...ev.settings };
      break;
    case "recording.changed":
      r.recording = !!ev.recording;
      r.notices = notice(r, ev.recording ? "The host started recording this space." : "The host stopped recording.");
      break;
    case "captions.changed":
      r.captions = !!ev.captions;
      break;
    case "space.ended":
      r.ended = ev.reason || "ended";
      r.space = { ...r.space, state: "ended" };
      break;
    case "host.away":
      r.hostAway = ev.grace_deadline;
      break;
    case "host.back":
      r.hostAway = null;
      break;
    case "user.warned":
      r.notices = notice(r, `A moderator warned you: ${ev.reason}`);
      break;
    default:
      break;
  }
  return r;
}

export function describeStageChange(ev, me) {
  const you = ev.user_id === me;
  const who = you ? "you" : ev.user_id || "someone";
  const entry = ev.stage.find((m) => m.user_id === ev.user_id);
  const mutedBy = entry && entry.muted_by === "host" ? " by a host" : "";
  const text = {
    request_approved: `${who} came on stage`,
    invite_accepted: `${who} accepted the invitation and came on stage`,
    left_stage: `${who} left the stage`,
    moved_to_audience: `${who} went back to the audience`,
    removed: `${who} ${you ? "were" : "was"} removed from the space`,
    left: `${who} left the space`,
    disconnected: `${who} lost the connection`,
    rejoined: `${who} joined`,
    muted: `${who} ${you ? "were" : "was"} muted${mutedBy}`,
    unmuted: `${who} unmuted`,
    cohost_added: `${who} became a co-host`,
    cohost_removed: `${who} ${you ? "are" : "is"} no longer a co-host`,
    host_handover: `${who} took over as host`,
  }[ev.reason];
  const line = text || `the stage changed (${ev.reason})`;
  // User ids keep their case; only a leading "you"/"the" is capitalised.
  return (/^(you|someone|the) /.test(line) ? line.charAt(0).toUpperCase() + line.slice(1) : line) + ".";
}

export function mutedLabel(entry) {
  if (!entry.muted) return "mic on";
  return entry.muted_by === "host" ? "muted by a host" : "muted";
}

export function endedLabel(reason) {
  return (
    {
      ended_by_host: "The host ended this space.",
      ended_by_admin: "A moderator ended this space.",
      host_left: "The host did not come back in time; the space ended.",
      host_no_show: "The host never joined; the space ended.",
      host_suspended: "The host's account was suspended; the space ended.",
      cancelled: "The host cancelled this space.",
    }[reason] || `This space has ended (${reason}).`
  );
}
