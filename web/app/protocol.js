// The WebSocket protocol (docs/asyncapi.yaml), as sohbet_client/client.py speaks it:
// commands carry a `ref`; the reply or error with that ref settles the command's
// promise; events go to `onEvent`. Broadcast events carry a per-space `seq`: stale
// ones are dropped and a gap triggers `space.sync`. A dropped socket reconnects
// with backoff and then calls `onReconnect` (the app re-joins its space). Before each
// connection `connectUrl()` gives the URL to open (the app fetches a single-use ticket, so a
// refusal comes back over REST with its reason: a browser never sees a handshake's status);
// a refusal it marks `final` (suspended, signed out) ends the reconnecting: `onGiveUp(error)`.
// A join reply that names a broadcast channel (`data.broadcast`) makes it subscribe there too
// (broadcast.js, AppSync Events): those room events go through the same seq bookkeeping.

import { BroadcastLink } from "./broadcast.js";

export class CommandError extends Error {
  constructor(code, message, data = null) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
    this.data = data;
  }
}

const COMMAND_TIMEOUT_MS = 10_000;
// API Gateway closes a WebSocket after 10 minutes without a message: a quiet listener pings.
const KEEPALIVE_MS = 5 * 60_000;
const SNAPSHOT_ACTIONS = new Set(["space.join", "space.sync"]);

export function withTicket(url, ticket) {
  const u = new URL(url);
  u.searchParams.set("ticket", ticket);
  return u.toString();
}

/** A refusal that no reconnect can cure (thrown by `connectUrl`). */
export class FinalRefusal extends Error {
  constructor(reason, message, data = null) {
    super(message);
    this.reason = reason; // "suspended", "signed out"
    this.data = data;
  }
}

export class SohbetSocket {
  /** connectUrl: async () => the URL to open now; throws FinalRefusal to stop for good. */
  constructor(connectUrl, handlers = {}) {
    this.connectUrl = connectUrl;
    this.onEvent = handlers.onEvent || (() => {});
    this.onStatus = handlers.onStatus || (() => {});
    this.onResync = handlers.onResync || (() => {});
    this.onReconnect = handlers.onReconnect || (() => {});
    this.onGiveUp = handlers.onGiveUp || (() => {});
    this.token = handlers.token || (() => null); // the JWT, for the broadcast tier's Authorization
    this.broadcast = null; // BroadcastLink, once a join reply names a channel
    this.followed = new Map(); // space_id -> channel
    this.ws = null;
    this.pending = new Map(); // ref -> {resolve, reject, action, spaceId, timer}
    this.lastSeq = new Map(); // space_id -> last broadcast seq seen
    this.resyncing = new Set();
    this.nextRef = 1;
    this.closedByUs = false;
    this.attempt = 0;
    this.gaps = 0;
    this.resyncs = 0;
    this.reconnects = 0;
    this.holdUntil = 0; // no reconnect before this time (drop() sets it)
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    this.closedByUs = false;
    return this._open();
  }

  async _open() {
    this.onStatus(this.attempt ? "reconnecting" : "connecting");
    let url;
    try {
      url = await this.connectUrl();
    } catch (error) {
      if (error instanceof FinalRefusal) {
        this.closedByUs = true;
        if (this.broadcast) this.broadcast.close(); // no room events for someone cut off
        this.onGiveUp(error);
      } else if (this.attempt > 0 && !this.closedByUs) {
        this._scheduleReconnect(0); // the REST call failed (network): try again later
      }
      throw error;
    }
    if (this.closedByUs) throw new Error("closed while connecting");
    return this._openSocket(url);
  }

  _openSocket(url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      this.ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.attempt = 0;
        clearInterval(this.keepalive);
        this.keepalive = setInterval(() => this.send("ping").catch(() => {}), KEEPALIVE_MS);
        this.onStatus("online");
        resolve();
      };
      ws.onmessage = (message) => this._receive(message.data);
      ws.onclose = (close) => {
        if (this.ws === ws) {
          this.ws = null;
          clearInterval(this.keepalive);
        }
        this._failPending(new CommandError("disconnected", "the connection closed before the answer came"));
        if (!opened) {
          reject(new Error("the server refused the connection or cannot be reached"));
        }
        if (this.closedByUs) {
          this.onStatus("offline");
          return;
        }
        if (opened || this.attempt > 0) this._scheduleReconnect(close.code);
      };
    });
  }

  _scheduleReconnect(code) {
    this.attempt += 1;
    const delay = Math.max(Math.min(10_000, 250 * 2 ** (this.attempt - 1)), this.holdUntil - Date.now());
    this.onStatus("reconnecting", { code, delay });
    setTimeout(async () => {
      if (this.closedByUs) return;
      try {
        await this._open();
      } catch {
        return; // the next attempt is scheduled, or a final refusal ended them
      }
      this.reconnects += 1;
      this.onReconnect();
    }, delay);
  }

  close() {
    this.closedByUs = true;
    if (this.ws) this.ws.close(1000, "bye");
    if (this.broadcast) this.broadcast.close();
  }

  // -- the broadcast tier

  _follow(spaceId, info) {
    if (!info || !info.channel || !info.realtime_url || !info.http_host) return;
    if (!this.broadcast) {
      this.broadcast = new BroadcastLink(info.realtime_url, info.http_host, this.token, (frame) =>
        this._receiveBroadcast(frame),
      );
      // A dropped realtime socket: subscribe again (a missed event shows as a gap in seq).
      this.broadcast.onLost = () => {
        if (this.closedByUs) return;
        for (const [spaceId, channel] of this.followed) this._follow(spaceId, { ...info, channel });
      };
    }
    this.followed.set(spaceId, info.channel);
    this.broadcast.subscribe(info.channel).catch((error) => {
      this.onEvent({ event: "error", code: "broadcast", message: `room events channel: ${error.message}` });
    });
  }

  _unfollow(spaceId) {
    const channel = this.followed.get(spaceId);
    this.followed.delete(spaceId);
    if (channel && this.broadcast) this.broadcast.unsubscribe(channel).catch(() => {});
  }

  _receiveBroadcast(frame) {
    if (!frame || frame.type !== "event") return;
    if (["participant.removed", "space.ended", "session.replaced"].includes(frame.event)) {
      this._unfollow(frame.space_id);
    }
    if (this._admit(frame)) this.onEvent(frame);
  }

  /** Close the socket as a network failure would, and stay away `holdMs` (for tests). */
  drop(holdMs = 0) {
    this.holdUntil = Date.now() + holdMs;
    if (this.ws) this.ws.close(4000, "dropped on purpose");
  }

  send(action, fields = {}) {
    if (!this.open) {
      return Promise.reject(new CommandError("disconnected", "not connected; reconnecting"));
    }
    const ref = `c${this.nextRef++}`;
    const frame = { action, ref };
    for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) frame[k] = v;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new CommandError("timeout", `no answer to ${action} within ${COMMAND_TIMEOUT_MS / 1000} s`));
      }, COMMAND_TIMEOUT_MS);
      this.pending.set(ref, { resolve, reject, action, spaceId: fields.space_id, timer });
      this.ws.send(JSON.stringify(frame));
    });
  }

  forget(spaceId) {
    this.lastSeq.delete(spaceId);
  }

  _failPending(error) {
    for (const [ref, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(error);
      this.pending.delete(ref);
    }
  }

  _receive(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (frame.type === "reply" || frame.type === "error") {
      const p = this.pending.get(frame.ref);
      if (!p) {
        if (frame.type === "error") this.onEvent({ event: "error", code: frame.code, message: frame.message });
        return;
      }
      this.pending.delete(frame.ref);
      clearTimeout(p.timer);
      if (frame.type === "error") {
        p.reject(new CommandError(frame.code, frame.message, frame.data || null));
        return;
      }
      const data = frame.data || {};
      if (p.action === "space.leave" && p.spaceId) {
        this.lastSeq.delete(p.spaceId);
        this._unfollow(p.spaceId);
      }
      if (p.action === "space.join" && p.spaceId && data.broadcast) this._follow(p.spaceId, data.broadcast);
      if (SNAPSHOT_ACTIONS.has(p.action) && p.spaceId && Number.isInteger(data.seq)) {
        // Events newer than the snapshot may have come before the reply: never go back.
        const last = this.lastSeq.get(p.spaceId);
        this.lastSeq.set(p.spaceId, last === undefined ? data.seq : Math.max(last, data.seq));
      }
      p.resolve(data);
      return;
    }
    if (frame.type === "event") {
      if (["participant.removed", "space.ended", "session.replaced"].includes(frame.event)) {
        this._unfollow(frame.space_id); // this socket no longer belongs in the room
      }
      if (this._admit(frame)) this.onEvent(frame);
      return;
    }
    if (frame.message) {
      // API Gateway's own error frame: the handler failed outright.
      this.onEvent({ event: "error", code: "gateway_error", message: frame.message });
    }
  }

  _admit(frame) {
    const { space_id: spaceId, seq } = frame;
    if (typeof spaceId !== "string" || !Number.isInteger(seq)) return true; // private event
    const last = this.lastSeq.get(spaceId);
    if (last !== undefined && seq <= last) return false; // already seen
    this.lastSeq.set(spaceId, seq);
    if (last !== undefined && seq > last + 1) {
      this.gaps += 1;
      this._resync(spaceId);
    }
    return true;
  }

  async _resync(spaceId) {
    if (this.resyncing.has(spaceId)) return;
    this.resyncing.add(spaceId);
    try {
      const data = await this.send("space.sync", { space_id: spaceId });
      this.resyncs += 1;
      this.onResync(spaceId, data);
    } catch (error) {
      this.onEvent({ event: "error", code: error.code || "internal", message: `resync failed: ${error.message}` });
    } finally {
      this.resyncing.delete(spaceId);
    }
  }
}
