// The broadcast tier (docs/asyncapi.yaml, "The broadcast tier"): a space's room events
// published once to its channel on AWS AppSync Events, received here over the Event API's
// realtime protocol, as sohbet_client/broadcast.py does it. One socket for every space:
// subprotocols `aws-appsync-event-ws` and `header-<base64url {host, Authorization}>`,
// connection_init -> connection_ack, then subscribe {id, channel, authorization}; each
// `data` message carries one event frame as a JSON string, handed to `onEvent`.
// https://docs.aws.amazon.com/appsync/latest/eventapi/event-api-websocket-protocol.html

const PROTOCOL = "aws-appsync-event-ws";
const ANSWER_TIMEOUT_MS = 10_000;

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export class BroadcastLink {
  /** token: () => the JWT sent as the Authorization header; onEvent(frame): a room event. */
  constructor(realtimeUrl, httpHost, token, onEvent) {
    this.realtimeUrl = realtimeUrl;
    this.httpHost = httpHost;
    this.token = token;
    this.onEvent = onEvent;
    this.ws = null;
    this.ready = null; // a promise of the acknowledged socket
    this.channels = new Map(); // channel -> subscription id
    this.waiting = new Map(); // id -> {resolve, timer}
    this.nextId = 1;
    this.received = 0;
    this.closing = false;
    this.onLost = () => {}; // the socket dropped while subscribed: the owner subscribes again
  }

  _auth() {
    return { host: this.httpHost, Authorization: this.token() };
  }

  _connect() {
    if (this.ready) return this.ready;
    this.ready = new Promise((resolve, reject) => {
      const header = `header-${base64url(JSON.stringify(this._auth()))}`;
      const ws = new WebSocket(this.realtimeUrl, [PROTOCOL, header]);
      let acknowledged = false;
      ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init" }));
      ws.onmessage = (message) => {
        let frame;
        try {
          frame = JSON.parse(message.data);
        } catch {
          return;
        }
        if (frame.type === "connection_ack") {
          acknowledged = true;
          resolve(ws);
        } else if (frame.type === "connection_error") {
          reject(new Error(`the Event API refused the connection: ${JSON.stringify(frame.errors)}`));
        } else {
          this._dispatch(frame);
        }
      };
      ws.onclose = () => {
        if (this.ws === ws) this.ws = null;
        this.ready = null;
        const had = this.channels.size > 0;
        this.channels.clear();
        if (had && !this.closing) setTimeout(() => this.onLost(), 1000);
        for (const [, w] of this.waiting) w.resolve({ type: "closed" });
        this.waiting.clear();
        if (!acknowledged) reject(new Error("the Event API socket closed before connection_ack"));
      };
      this.ws = ws;
    });
    return this.ready;
  }

  _dispatch(frame) {
    if (frame.type === "data") {
      let event;
      try {
        event = JSON.parse(frame.event);
      } catch {
        return;
      }
      this.received += 1;
      this.onEvent(event);
      return;
    }
    const w = frame.id && this.waiting.get(frame.id);
    if (w) {
      this.waiting.delete(frame.id);
      clearTimeout(w.timer);
      w.resolve(frame);
    }
  }

  async _ask(frame) {
    const ws = await this._connect();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(frame.id);
        resolve({ type: "timeout" });
      }, ANSWER_TIMEOUT_MS);
      this.waiting.set(frame.id, { resolve, timer });
      ws.send(JSON.stringify(frame));
    });
  }

  /** Subscribe to a channel (once); throws with the Event API's error when refused. */
  async subscribe(channel) {
    if (this.channels.has(channel)) return this.channels.get(channel);
    const id = `s${this.nextId++}`;
    const answer = await this._ask({ type: "subscribe", id, channel, authorization: this._auth() });
    if (answer.type !== "subscribe_success") {
      const first = (answer.errors && answer.errors[0]) || {};
      throw new Error(`${first.errorType || answer.type}: ${first.message || "subscription refused"}`);
    }
    this.channels.set(channel, id);
    return id;
  }

  async unsubscribe(channel) {
    const id = this.channels.get(channel);
    if (id === undefined) return;
    this.channels.delete(channel);
    if (this.ws) await this._ask({ type: "unsubscribe", id });
  }

  close() {
    this.closing = true;
    if (this.ws) this.ws.close(1000, "bye");
  }
}
