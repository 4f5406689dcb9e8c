// The controller: signs in, lists spaces, joins one, turns clicks into commands and
// events into state, and keeps the audio in step with the user's role.
import { $, on } from "./dom.js";
import { Api } from "./api.js";
import { loadConfig } from "./config.js";
import { audioContext, createMedia, mediaKind } from "./media.js";
import { FinalRefusal, SohbetSocket, withTicket } from "./protocol.js";
import * as R from "./room.js";
import * as V from "./view.js";

const config = loadConfig();
const api = new Api(config.apiBaseUrl);

const app = {
  config,
  user: null,
  socket: null,
  room: null,
  media: null,
  mediaCreds: null,
  primaryCreds: null, // media.promoted: on stage from a replica meeting (the connection is kept)
  mediaQueue: Promise.resolve(), // media operations run one after another
  joinedAt: null, // performance.now() at the join reply
  firstAudioMs: null, // join reply -> first audible sound from the media server
  notifications: [], // the inbox's first page, newest first, and what arrived since
  reminded: new Set(), // ids of scheduled spaces I set a reminder on
  listed: ["live", ""], // what the space list shows (to show it again)
};

// Events redraw the page. Markup that did not change is left alone: replacing it would swap
// the button under a press in progress (down on the old one, up on the new: no click).
const drawn = new WeakMap();

function draw(el, html) {
  if (drawn.get(el) === html) return;
  drawn.set(el, html);
  el.innerHTML = html;
}

// -- messages ------------------------------------------------------------------

function showAlert(html) {
  const el = $("#alert");
  el.innerHTML = html;
  el.hidden = false;
}

function clearAlert() {
  $("#alert").hidden = true;
  $("#alert").textContent = "";
}

function refused(what, error) {
  showAlert(V.refusal(what, error));
}

function note(text) {
  if (!app.room) return;
  app.room = { ...app.room, notices: [...app.room.notices, { at: Date.now(), text }].slice(-6) };
}

function show(section) {
  for (const id of ["signin", "lobby", "room"]) $(`#${id}`).hidden = id !== section;
}

// -- signing in ----------------------------------------------------------------

async function signIn(token) {
  api.token = token;
  let who;
  try {
    who = await api.whoami();
  } catch (error) {
    refused("Signing in", error);
    return;
  }
  const socket = new SohbetSocket(connectUrl, {
    onEvent,
    onStatus: setConnection,
    onResync,
    onReconnect,
    onGiveUp,
    token: () => api.token,
  });
  try {
    await socket.connect();
  } catch (error) {
    if (error instanceof FinalRefusal) return; // onGiveUp said why
    showAlert(V.esc(`Cannot open the WebSocket at ${config.wsUrl}: ${error.message}`));
    return;
  }
  clearAlert();
  app.user = who.user_id;
  app.socket = socket;
  window.sohbet.socket = socket;
  sessionStorage.setItem("sohbet.token", token);
  $("#whoami").textContent = `signed in as ${who.user_id}`;
  $("#sign-out").hidden = false;
  show("lobby");
  await Promise.all([loadInbox(), loadReminders()]);
  await listSpaces("live");
  const wanted = new URLSearchParams(location.hash.slice(1)).get("space");
  if (wanted) await join(wanted);
}

/** Before each (re)connection: a single-use ticket (POST /ws/ticket), so the JWT never sits in a
 * URL and a refusal says why. An expired token: dev users get a fresh one, others sign in again. */
async function connectUrl() {
  let ticket;
  try {
    ticket = await api.wsTicket();
  } catch (error) {
    if (error.code === "not_allowed" && error.data && error.data.suspended_until) {
      throw new FinalRefusal("suspended", error.detail, error.data);
    }
    if (error.code !== "unauthorized") throw error;
    if (!(await refreshToken())) throw new FinalRefusal("signed out", "your sign-in has expired");
    ticket = await api.wsTicket();
  }
  return withTicket(config.wsUrl, ticket.ticket);
}

async function refreshToken() {
  if (config.signIn !== "dev" || !app.user) return false;
  try {
    const minted = await api.devToken(app.user);
    api.token = minted.token;
    sessionStorage.setItem("sohbet.token", minted.token);
    return true;
  } catch {
    return false;
  }
}

/** No reconnect can help: the account is suspended (a moderator cut the user off) or signed out. */
function onGiveUp(refusal) {
  setConnection(refusal.reason === "suspended" ? "suspended" : "signed out");
  if (refusal.reason === "suspended") {
    const until = new Date(refusal.data.suspended_until * 1000).toLocaleString();
    showAlert(
      `<strong id="suspended">A moderator suspended your account until ${V.esc(until)}.</strong> ` +
        "You were cut off: this page is disconnected and cannot reconnect until then.",
    );
  } else {
    showAlert("Your sign-in has expired. Sign out and sign in again.");
  }
  if (app.room && !app.room.ended && refusal.reason === "suspended") {
    app.room = { ...app.room, gone: "suspended" };
    stopMedia();
    renderRoom();
  }
}

function setConnection(status, detail) {
  const el = $("#connection");
  el.className = `pill ${status}`;
  el.textContent = status === "reconnecting" && detail ? `reconnecting in ${detail.delay} ms…` : status;
}

async function signOut() {
  await leaveRoom();
  if (app.socket) app.socket.close();
  app.socket = null;
  app.user = null;
  sessionStorage.removeItem("sohbet.token");
  $("#whoami").textContent = "";
  $("#sign-out").hidden = true;
  setConnection("signed out");
  show("signin");
}

// -- the lobby -----------------------------------------------------------------

async function listSpaces(mode, q = "") {
  app.listed = [mode, q];
  let page;
  try {
    if (mode === "search") page = await api.searchSpaces(q, "live");
    else if (mode === "creator") page = await api.spacesByCreator(q || app.user);
    else page = await api.listSpaces(mode);
  } catch (error) {
    refused("Listing spaces", error);
    return;
  }
  const items = page.data.map((s) => V.spaceItem(s, app.user, app.reminded));
  draw($("#space-list"), items.length ? items.join("") : `<li class="muted">No spaces here.</li>`);
}

async function createSpace(form) {
  const data = new FormData(form);
  const body = { title: data.get("title"), speak_policy: data.get("speak_policy") };
  if (data.get("recording")) body.recording = true;
  if (data.get("lang")) body.lang = data.get("lang");
  if (data.get("scheduled_start")) body.scheduled_start = new Date(data.get("scheduled_start")).toISOString();
  audioContext(); // this click may lead straight into the space: let audio start now
  let space;
  try {
    space = await api.createSpace(body);
  } catch (error) {
    refused("Creating the space", error);
    return;
  }
  form.reset();
  if (space.state === "live") await join(space.id);
  else await listSpaces("scheduled");
}

// -- notifications and reminders --------------------------------------------------

async function loadInbox() {
  try {
    app.notifications = (await api.notifications()).data;
  } catch (error) {
    refused("Loading notifications", error);
  }
  renderInbox();
}

function renderInbox() {
  const items = app.notifications.map(V.notificationItem);
  draw($("#notification-list"), items.length ? items.join("") : `<li class="muted">Nothing yet.</li>`);
  $("#unread").textContent = `${app.notifications.filter((n) => !n.read).length} new`;
}

/** A `notification` event: told once per notification, but a reconnect may overlap the inbox. */
function onNotification(n) {
  if (!app.notifications.some((known) => known.id === n.id)) app.notifications.unshift(n);
  renderInbox();
  if (n.kind !== "live") loadReminders();
}

async function loadReminders() {
  let page;
  try {
    page = await api.myReminders();
  } catch (error) {
    refused("Loading reminders", error);
    return;
  }
  app.reminded = new Set(page.data.filter((r) => r.space && r.space.state === "scheduled").map((r) => r.space_id));
  const items = page.data.map(V.reminderItem);
  draw($("#reminder-list"), items.length ? items.join("") : `<li class="muted">No reminders.</li>`);
}

async function remind(spaceId, on) {
  try {
    await (on ? api.setReminder(spaceId) : api.clearReminder(spaceId));
  } catch (error) {
    refused(on ? "Setting the reminder" : "Clearing the reminder", error);
    return;
  }
  clearAlert();
  await loadReminders();
  await listSpaces(...app.listed);
}

// -- the room ------------------------------------------------------------------

async function join(spaceId) {
  audioContext();
  let data;
  try {
    data = await app.socket.send("space.join", { space_id: spaceId });
  } catch (error) {
    refused("Joining the space", error);
    return;
  }
  app.joinedAt = performance.now();
  app.firstAudioMs = null;
  clearAlert();
  app.room = R.fromSnapshot(app.user, data);
  history.replaceState(null, "", `#space=${encodeURIComponent(spaceId)}`);
  show("room");
  fillSettings();
  renderRoom();
  if (data.media) useMedia(data.media);
  else setAudioState("no audio credentials in the join reply");
  if (data.primary_media) promoteMedia(data.primary_media); // resumed on stage from a replica
}

/** The uplink is on while the user is on stage; their tile's mute state gates the mic track. */
function onStage() {
  return !!(app.room && R.myEntry(app.room));
}

function micShouldBeOn() {
  const entry = app.room && R.myEntry(app.room);
  return !!entry && !entry.muted;
}

function queueMedia(step) {
  app.mediaQueue = app.mediaQueue.then(step).catch((error) => setAudioState(`unavailable: ${error.message}`));
  return app.mediaQueue;
}

function useMedia(creds) {
  return queueMedia(async () => {
    if (!mediaKind(creds)) {
      setAudioState("unavailable: the join reply names no media path this client knows");
      return;
    }
    if (app.media && app.mediaCreds && app.media.kind === mediaKind(creds)) {
      app.mediaCreds = creds;
      app.media.setMicEnabled(micShouldBeOn());
      await app.media.update(creds, { send: onStage() });
      return;
    }
    if (app.media) await app.media.stop();
    app.mediaCreds = creds;
    app.media = await createMedia(creds, {
      audioElement: $("#remote-audio"),
      onState: setAudioState,
      rawMic: config.rawMic,
    });
    app.media.setMicEnabled(micShouldBeOn());
    await app.media.start({ send: onStage() });
  });
}

function syncMedia() {
  return queueMedia(async () => {
    if (!app.media) return;
    app.media.setMicEnabled(micShouldBeOn());
    // In a replica, sending follows media.promoted / media.demoted (the connection is kept).
    if (inReplica()) return;
    if (onStage() !== app.media.sending) await app.media.update(app.mediaCreds, { send: onStage() });
  });
}

function inReplica() {
  return !!(app.mediaCreds && app.mediaCreds.Meeting.PrimaryMeetingId);
}

/** On stage from a replica: promote the same connection with the primary attendee's credentials. */
function promoteMedia(primary) {
  return queueMedia(async () => {
    if (!app.media || !app.mediaCreds || app.media.kind !== mediaKind(primary)) return;
    app.primaryCreds = primary;
    app.media.setMicEnabled(micShouldBeOn());
    await app.media.promote(primary);
  });
}

function demoteMedia() {
  return queueMedia(async () => {
    app.primaryCreds = null;
    if (app.media) await app.media.demote();
  });
}

/** media.renewed: Chime ended the meeting and the space opened a new one; join again for new
 * credentials (role and seat are kept), as docs/asyncapi.yaml asks. */
async function rejoinForNewMeeting() {
  if (!app.room || app.room.ended || app.room.gone) return;
  const spaceId = app.room.spaceId;
  let data;
  try {
    data = await app.socket.send("space.join", { space_id: spaceId });
  } catch (error) {
    refused("Joining the space's new meeting", error);
    return;
  }
  if (!app.room || app.room.spaceId !== spaceId) return;
  app.room = R.fromSnapshot(app.user, data, app.room);
  note("The audio moved to a new meeting; reconnected.");
  app.primaryCreds = null;
  if (data.media) useMedia(data.media);
  if (data.primary_media) promoteMedia(data.primary_media);
  renderRoom();
}

function stopMedia() {
  return queueMedia(async () => {
    if (app.media) await app.media.stop();
    app.media = null;
    app.mediaCreds = null;
    app.primaryCreds = null;
  });
}

function setAudioState(text) {
  $("#audio-state").textContent = text;
}

async function leaveRoom() {
  if (!app.room) return;
  const { spaceId, ended, gone } = app.room;
  await stopMedia();
  if (!ended && !gone && app.socket && app.socket.open) {
    try {
      await app.socket.send("space.leave", { space_id: spaceId });
    } catch (error) {
      refused("Leaving the space", error);
    }
  }
  app.room = null;
  history.replaceState(null, "", location.pathname + location.search);
}

function onEvent(ev) {
  if (ev.event === "error") {
    refused("The server", { code: ev.code, detail: ev.message });
    return;
  }
  if (ev.event === "notification") {
    onNotification(ev.notification);
    return;
  }
  if (!app.room || (ev.space_id && ev.space_id !== app.room.spaceId)) return;
  const before = app.room;
  app.room = R.applyEvent(app.room, ev);
  if (ev.event === "media.moved") useMedia(ev.media);
  if (ev.event === "media.promoted") promoteMedia(ev.media);
  if (ev.event === "media.demoted") demoteMedia();
  if (ev.event === "media.renewed") rejoinForNewMeeting();
  if (ev.event === "stage.changed") {
    syncMedia();
    // Made a co-host: the hand queue goes to moderators only, so fetch it now.
    if (R.MODERATORS.has(app.room.role) && !R.MODERATORS.has(before.role)) refreshSnapshot();
  }
  if ((app.room.gone || app.room.ended) && !(before.gone || before.ended)) stopMedia();
  renderRoom();
}

async function refreshSnapshot() {
  const spaceId = app.room.spaceId;
  const data = await command("space.sync");
  if (data && app.room && app.room.spaceId === spaceId) {
    app.room = R.fromSnapshot(app.user, data, app.room);
    renderRoom();
  }
}

function onResync(spaceId, data) {
  if (!app.room || app.room.spaceId !== spaceId) return;
  app.room = R.fromSnapshot(app.user, data, app.room);
  note("Some events were missed: caught up with a fresh snapshot (space.sync).");
  syncMedia();
  renderRoom();
}

async function onReconnect() {
  if (!app.room || app.room.ended || app.room.gone) return;
  let data;
  try {
    data = await app.socket.send("space.join", { space_id: app.room.spaceId });
  } catch (error) {
    refused("Rejoining after the connection dropped", error);
    return;
  }
  app.room = R.fromSnapshot(app.user, data, app.room);
  note("The connection dropped; reconnected and caught up.");
  if (data.media && (!app.mediaCreds || data.media.Attendee.JoinToken !== app.mediaCreds.Attendee.JoinToken)) {
    useMedia(data.media);
  } else {
    syncMedia();
  }
  // Promoted out of a replica before the drop: promote again with the same credentials.
  const primary = data.primary_media;
  const same = app.primaryCreds && app.primaryCreds.Attendee.JoinToken === (primary && primary.Attendee.JoinToken);
  if (primary && !(same && app.media && app.media.promoted)) promoteMedia(primary);
  renderRoom();
}

// -- commands from the room ----------------------------------------------------

const WHAT = {
  "hand.raise": "Raising your hand",
  "hand.lower": "Lowering your hand",
  "invite.accept": "Accepting the invitation",
  "invite.decline": "Declining the invitation",
  "stage.leave": "Leaving the stage",
  "mic.mute": "Muting your mic",
  "mic.unmute": "Unmuting your mic",
  "speaker.invite": "Inviting to speak",
  "request.approve": "Bringing on stage",
  "request.deny": "Declining the request",
  "speaker.remove": "Moving to the audience",
  "speaker.mute": "Muting",
  "participant.remove": "Removing",
  "cohost.add": "Making co-host",
  "cohost.remove": "Removing the co-host",
  "settings.update": "Changing the settings",
  "recording.set": "Recording",
  "captions.set": "Captions",
  "reaction.send": "Sending the reaction",
  "report.send": "Reporting",
  "space.end": "Ending the space",
};

async function command(action, fields = {}) {
  try {
    const data = await app.socket.send(action, { space_id: app.room.spaceId, ...fields });
    clearAlert();
    return data;
  } catch (error) {
    refused(WHAT[action] || action, error);
    return null;
  }
}

async function roomAction(action, user, el) {
  const r = app.room;
  switch (action) {
    case "captions.set": {
      const data = await command(action, { on: user === "on" });
      if (data) app.room = { ...app.room, captions: !!data.captions };
      break;
    }
    case "recording.set": {
      const data = await command(action, { on: user === "on" });
      if (data) app.room = { ...app.room, recording: !!data.recording };
      break;
    }
    case "hand.raise":
      if (await command(action)) app.room = { ...app.room, handRaised: true };
      break;
    case "hand.lower":
      if (await command(action)) app.room = { ...app.room, handRaised: false };
      break;
    case "invite.accept":
    case "invite.decline":
      if (await command(action)) app.room = { ...app.room, invitedBy: null };
      break;
    case "mic.mute":
      if (app.media) app.media.setMicEnabled(false); // silent at once, before the server confirms
      if (!(await command(action)) && app.media) app.media.setMicEnabled(micShouldBeOn());
      break;
    case "mic.unmute":
      if ((await command(action)) && app.media) app.media.setMicEnabled(true);
      break;
    case "request.approve":
    case "request.deny":
      if (await command(action, { user_id: user })) {
        app.room = { ...app.room, hands: app.room.hands.filter((h) => h.user_id !== user) };
      }
      break;
    case "speaker.mute":
    case "speaker.remove":
    case "participant.remove":
    case "cohost.add":
    case "cohost.remove":
    case "speaker.invite":
      if (await command(action, { user_id: user })) note(`${WHAT[action]} ${user}: done.`);
      break;
    case "reaction.send":
      await command(action, { emoji: el.dataset.emoji });
      break;
    case "report.open": {
      // The report form, filled in for this person: the reporter still picks why.
      const form = $("#report");
      $("#safety").open = true;
      form.user_id.value = user;
      form.category.focus();
      return;
    }
    case "space.end":
      if (r.role === "host" && !confirmEnd()) return;
      await command(action);
      break;
    case "stage.leave":
      await command(action);
      break;
    case "space.leave":
    case "back":
      await leaveRoom();
      show("lobby");
      await listSpaces("live");
      return;
    default:
      return;
  }
  renderRoom();
}

function confirmEnd() {
  // Tests (and keyboard users in a hurry) can skip the prompt with ?noconfirm.
  return new URLSearchParams(location.search).has("noconfirm") || window.confirm("End the space for everyone?");
}

// -- rendering -----------------------------------------------------------------

function fillSettings() {
  const form = $("#settings");
  const s = app.room.settings;
  form.title.value = s.title || "";
  form.speak_policy.value = s.speak_policy || "everyone";
  form.handover.checked = !!s.handover;
}

function renderRoom() {
  const room = app.room;
  if (!room) return;
  $("#room-title").textContent = room.settings.title || room.space.title || room.spaceId;
  draw($("#room-meta"), V.roomMeta(room));
  draw($("#room-banner"), V.banner(room));
  const levels = stageLevels();
  draw($("#stage"), room.stage.map((m) => V.stageItem(m, room, levels.get(m.user_id) || 0)).join(""));
  draw($("#my-controls"), V.myControls(room));
  draw($("#recording-control"), room.ended ? "" : V.recordingButton(room));
  draw($("#captions-control"), room.ended ? "" : V.captionsButton(room));
  $("#captions").hidden = !room.captions || !!room.ended;
  const isMod = R.MODERATORS.has(room.role) && !room.ended && !room.gone;
  $("#moderation").hidden = !isMod;
  for (const el of document.querySelectorAll(".host-only")) el.hidden = room.role !== "host";
  draw(
    $("#hands"),
    room.hands.length ? room.hands.map(V.handItem).join("") : `<li class="muted">No one has asked to speak.</li>`,
  );
  draw($("#reaction-counts"), V.reactionCounts(room.reactionCounts));
  draw($("#reaction-feed"), room.reactions.slice(-8).map(V.reactionItem).join(""));
  draw(
    $("#notices"),
    room.notices
      .slice()
      .reverse()
      .map((n) => `<li>${V.esc(new Date(n.at).toLocaleTimeString())} ${V.esc(n.text)}</li>`)
      .join(""),
  );
}

/** Who is speaking: Chime reports a level per person; the local server sends one mix, which is
 * attributed to the only other unmuted person on stage when there is exactly one. */
function stageLevels() {
  const levels = new Map();
  const room = app.room;
  if (!room || !app.media) return levels;
  const perPerson = app.media.speakerLevels();
  if (perPerson) return new Map(perPerson);
  levels.set(room.me, app.media.micLevel());
  const others = room.stage.filter((m) => m.user_id !== room.me && !m.muted && m.present);
  if (others.length === 1) levels.set(others[0].user_id, app.media.level());
  return levels;
}

async function pollCaptions() {
  const el = $("#captions");
  if (!app.room || !app.room.captions || !app.media || !app.media.transcripts) return;
  let results = [];
  try {
    results = await app.media.transcripts();
  } catch {
    return; // the next poll tries again
  }
  const lines = results.slice(-2).map((r) => (r.Alternatives[0] || {}).Transcript || "");
  el.textContent = lines.length ? lines.join(" … ") : "Captions are on; nothing said yet.";
}

function tickMeters() {
  const level = app.media ? app.media.level() : 0;
  if (app.media) {
    const waiting = "click anywhere to hear the space";
    if (audioContext().state === "suspended") setAudioState(waiting);
    else if ($("#audio-state").textContent === waiting) setAudioState(app.media.state);
  }
  $("#room-level").value = level;
  if (app.media && app.firstAudioMs === null && app.joinedAt !== null && level > 0.01) {
    app.firstAudioMs = Math.round(performance.now() - app.joinedAt);
  }
  if (!app.room) return;
  for (const [user, v] of stageLevels()) {
    const tile = document.querySelector(`#stage li[data-user="${CSS.escape(user)}"]`);
    if (!tile) continue;
    tile.querySelector("meter").value = v;
    tile.classList.toggle("speaking", v > 0.02 && tile.dataset.muted !== "true");
  }
}

// -- wiring --------------------------------------------------------------------

function setup() {
  if (config.signIn === "token") {
    $("#dev-signin").hidden = true;
    $("#dev-signin-note").hidden = true;
  }
  $("#reaction-buttons").innerHTML = V.reactionButtons();
  $("#report").category.innerHTML = R.REPORT_CATEGORIES.map((c) => `<option>${c}</option>`).join("");

  on("#dev-signin", "submit", async (form) => {
    try {
      const minted = await api.devToken(form.user.value.trim());
      await signIn(minted.token);
    } catch (error) {
      refused("Signing in as a dev user", error);
    }
  });
  on("#token-signin", "submit", (form) => signIn(form.token.value.trim()));
  on("#create-space", "submit", createSpace);
  on("#find-spaces", "submit", (form) => listSpaces(form.mode.value, form.q.value.trim()));
  on("#join-by-id", "submit", (form) => join(form.space_id.value.trim()));
  on("#mod-user", "submit", async (form, event) => {
    const action = event.submitter ? event.submitter.value : "speaker.invite";
    const user = form.user_id.value.trim();
    if (await command(action, { user_id: user })) {
      note(`${WHAT[action]} ${user}: done.`);
      form.reset();
    }
    renderRoom();
  });
  on("#settings", "submit", async (form) => {
    const fields = {
      title: form.title.value.trim() || null,
      speak_policy: form.speak_policy.value,
      handover: form.handover.checked,
    };
    if (await command("settings.update", fields)) note("Settings saved.");
    renderRoom();
  });
  on("#report", "submit", async (form) => {
    const fields = { category: form.category.value, user_id: form.user_id.value.trim() || null };
    if (form.note.value.trim()) fields.note = form.note.value.trim();
    const data = await command("report.send", fields);
    if (data) {
      note(`Report sent (${data.report_id || "queued"}); moderators will look at it.`);
      form.reset();
    }
    renderRoom();
  });
  on("#block", "submit", async (form) => {
    const user = form.user_id.value.trim();
    try {
      await api.block(user);
    } catch (error) {
      refused(`Blocking ${user}`, error);
      return;
    }
    clearAlert();
    note(`You blocked ${user}: they cannot join spaces you host and are removed from this one if you host it.`);
    form.reset();
    renderRoom();
  });

  document.addEventListener("click", async (event) => {
    if (app.media) audioContext(); // a page restored without a click starts with audio suspended
    const el = event.target.closest("button[data-action]");
    if (!el || el.type === "submit") return;
    const { action, user } = el.dataset;
    if (action === "sign-out") return signOut();
    if (action === "join") return join(user);
    if (action === "remind" || action === "unremind") return remind(user, action === "remind");
    if (action === "read-all") {
      try {
        await api.markAllRead();
      } catch (error) {
        refused("Marking notifications read", error);
        return;
      }
      return loadInbox();
    }
    if (action === "start" || action === "cancel") {
      try {
        await (action === "start" ? api.startSpace(user) : api.cancelSpace(user));
      } catch (error) {
        refused(action === "start" ? "Starting the space" : "Cancelling the space", error);
        return;
      }
      if (action === "start") return join(user);
      return listSpaces("scheduled");
    }
    if (app.room) await roomAction(action, user, el);
  });

  setInterval(tickMeters, 100);
  setInterval(pollCaptions, 1000);
  // Closing the tab: end the media session now rather than when the server notices.
  window.addEventListener("pagehide", () => app.media && app.media.stop());
  const saved = sessionStorage.getItem("sohbet.token");
  if (saved) signIn(saved);
}

// For people debugging and for the browser tests: the state, and the audio as measured here.
window.sohbet = {
  app,
  socket: null,
  dropSocket: (holdMs = 0) => app.socket && app.socket.drop(holdMs),
};
window.sohbetAudio = {
  level: () => (app.media ? app.media.level() : 0),
  micLevel: () => (app.media ? app.media.micLevel() : 0),
  dominantFrequency: () => (app.media ? app.media.dominantFrequency() : null),
  get kind() {
    return app.media ? app.media.kind : null;
  },
  get sending() {
    return !!(app.media && app.media.sending);
  },
  get promoted() {
    return !!(app.media && app.media.promoted);
  },
  /** The WHIP session's Location (one connection kept through a promotion), or null. */
  get session() {
    return (app.media && app.media.location) || null;
  },
  get state() {
    return app.media ? app.media.state : "off";
  },
  get firstAudioMs() {
    return app.firstAudioMs;
  },
};

setup();
