// Audio behind one small interface, two implementations:
//   WhipMedia  — the local stack's embedded media server: WebRTC with WHIP-style
//                signaling (POST an SDP offer, 201 + answer + Location, DELETE to leave);
//   ChimeMedia — Amazon Chime SDK meetings (chime.js, loaded only when needed).
// The join reply's media.Meeting.MediaPlacement.SignalingUrl picks one: http(s) is
// WHIP, wss is Chime. Both take the join credentials as they come
// ({Meeting, Attendee}) and offer: start({send}), update(media, {send}),
// promote(media) / demote() (a replica listener brought on stage: media.promoted /
// media.demoted), setMicEnabled(on), stop(), and a level meter for the mic and for what is heard.

export function mediaKind(media) {
  const url = media && media.Meeting && media.Meeting.MediaPlacement && media.Meeting.MediaPlacement.SignalingUrl;
  if (typeof url !== "string") return null;
  if (/^https?:\/\//i.test(url)) return "whip";
  if (/^wss:\/\//i.test(url)) return "chime";
  return null;
}

export async function createMedia(media, hooks = {}) {
  const kind = mediaKind(media);
  if (kind === "whip") return new WhipMedia(media, hooks);
  if (kind === "chime") {
    const { ChimeMedia } = await import("./chime.js");
    return new ChimeMedia(media, hooks);
  }
  throw new Error("the join reply has no media placement this client knows (SignalingUrl)");
}

// -- measuring audio ---------------------------------------------------------

let sharedContext = null;

/** One AudioContext for the page, at 48 kHz like Opus; created (or resumed) on a user's click. */
export function audioContext() {
  if (sharedContext === null) sharedContext = new AudioContext({ sampleRate: 48000 });
  if (sharedContext.state === "suspended") sharedContext.resume();
  return sharedContext;
}

/** An analyser on a MediaStream: RMS level and the dominant frequency. */
export class Probe {
  constructor(stream, { toSpeakers = false } = {}) {
    const ctx = audioContext();
    this.source = ctx.createMediaStreamSource(stream);
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = 8192; // 5.9 Hz bins at 48 kHz
    this.analyser.smoothingTimeConstant = 0;
    this.source.connect(this.analyser);
    this.output = null;
    if (toSpeakers) {
      this.output = ctx.createGain();
      this.source.connect(this.output);
      this.output.connect(ctx.destination);
    }
    // The whole buffer each time: a shorter array would copy the oldest samples.
    this.time = new Float32Array(this.analyser.fftSize);
    this.freq = new Float32Array(this.analyser.frequencyBinCount);
  }

  /** RMS of the last fftSize samples, 0..1 (a full-scale sine is 0.707). */
  level() {
    this.analyser.getFloatTimeDomainData(this.time);
    let sum = 0;
    for (const v of this.time) sum += v * v;
    return Math.sqrt(sum / this.time.length);
  }

  /** The loudest frequency in Hz (parabolic interpolation between bins), or null in silence. */
  dominantFrequency() {
    if (this.level() < 0.003) return null;
    this.analyser.getFloatFrequencyData(this.freq);
    let best = 1;
    for (let i = 2; i < this.freq.length - 1; i++) if (this.freq[i] > this.freq[best]) best = i;
    const [a, b, c] = [this.freq[best - 1], this.freq[best], this.freq[best + 1]];
    const denom = a - 2 * b + c;
    const shift = denom === 0 ? 0 : (0.5 * (a - c)) / denom;
    const binHz = this.analyser.context.sampleRate / this.analyser.fftSize;
    return (best + shift) * binHz;
  }

  setVolume(v) {
    if (this.output) this.output.gain.value = v;
  }

  disconnect() {
    this.source.disconnect();
    if (this.output) this.output.disconnect();
  }
}

// -- local WebRTC by WHIP ----------------------------------------------------

const ICE_GATHERING_TIMEOUT_MS = 2000;

function iceGathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener("icegatheringstatechange", check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => pc.iceGatheringState === "complete" && done();
    const timer = setTimeout(done, ICE_GATHERING_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

export class WhipMedia {
  constructor(media, hooks = {}) {
    this.kind = "whip";
    this.media = media;
    this.hooks = hooks; // onState(text), onRemoteStream(stream)
    this.pc = null;
    this.location = null;
    this.sending = false;
    this.mic = null; // MediaStream from getUserMedia, only while on stage
    this.transceiver = null;
    this.primary = null; // media.promoted credentials: this replica session speaks as that attendee
    this.promoted = false;
    this.micEnabled = true;
    this.remote = null; // Probe on what the server sends (the mix of the others)
    this.micProbe = null;
    this.audioElement = hooks.audioElement || null;
  }

  get token() {
    return this.media.Attendee.JoinToken;
  }

  get url() {
    return this.media.Meeting.MediaPlacement.SignalingUrl;
  }

  async start({ send }) {
    await this._connect(send);
  }

  /** New credentials (media.moved) or a new role: offer again; the new session replaces the old. */
  async update(media, { send }) {
    const tokenChanged = media.Attendee.JoinToken !== this.token;
    if (!tokenChanged && send === this.sending && this.pc) return;
    const oldLocation = this.location;
    const oldToken = this.token;
    if (tokenChanged) this.primary = null; // another attendee (a move, a renewed meeting): not promoted
    this.media = media;
    await this._connect(send);
    if (tokenChanged && oldLocation) this._delete(oldLocation, oldToken);
  }

  get inReplica() {
    return !!this.media.Meeting.PrimaryMeetingId;
  }

  async _openMic() {
    if (this.mic) return;
    const processing = !this.hooks.rawMic;
    this.mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing },
      video: false,
    });
    this.micProbe = new Probe(this.mic);
  }

  async _connect(send) {
    this._state(send ? "connecting (speaker)" : "connecting (listener)");
    if (send) await this._openMic();
    if (!send) this._releaseMic();
    const pc = new RTCPeerConnection({ iceServers: [] }); // nothing but host candidates: no STUN, no TURN
    let transceiver;
    if (send) {
      const track = this.mic.getAudioTracks()[0];
      track.enabled = this.micEnabled;
      transceiver = pc.addTransceiver(track, { direction: "sendrecv", streams: [this.mic] });
    } else if (this.inReplica) {
      // A replica listener may be promoted in place (media.promoted): WHIP cannot renegotiate, so
      // the offer can send from the start; no track (and no mic) until the promotion.
      transceiver = pc.addTransceiver("audio", { direction: "sendrecv" });
    } else {
      transceiver = pc.addTransceiver("audio", { direction: "recvonly" }); // a listener never opens the mic
    }
    pc.ontrack = (event) => this._attach(event.streams[0] || new MediaStream([event.track]));
    pc.onconnectionstatechange = () => {
      if (this.pc === pc) this._state(`${pc.connectionState}${this.sending ? " (speaker)" : " (listener)"}`);
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc); // one offer with every candidate: no trickle
    let response;
    try {
      response = await fetch(this.url, {
        method: "POST",
        headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${this.token}` },
        body: pc.localDescription.sdp,
      });
    } catch (error) {
      pc.close();
      throw new Error(`media server unreachable: ${error.message}`);
    }
    if (response.status !== 201) {
      pc.close();
      const text = (await response.text()).slice(0, 200);
      throw new Error(`media server refused the offer: HTTP ${response.status} ${text}`);
    }
    const location = response.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
    const old = this.pc;
    this.pc = pc;
    this.transceiver = transceiver;
    this.location = location ? new URL(location, this.url).toString() : null;
    this.sending = send;
    this.promoted = false; // a new session is never promoted: promote it again (as Chime wants)
    if (old) old.close(); // replaced on the server by the new session
    if (this.primary) await this._promote();
  }

  /** Promote this replica session in place with a primary attendee's credentials (media.promoted):
   * POST {Location}/promotion, then send the microphone on the same connection. */
  async promote(media) {
    this.primary = media;
    if (this.location) await this._promote();
  }

  async _promote() {
    const response = await fetch(`${this.location}/promotion`, {
      method: "POST",
      headers: { Authorization: `Bearer ${this.primary.Attendee.JoinToken}` },
    });
    if (response.status !== 200) {
      const text = (await response.text()).slice(0, 200);
      throw new Error(`media server refused the promotion: HTTP ${response.status} ${text}`);
    }
    this.promoted = true;
    await this._openMic();
    const track = this.mic.getAudioTracks()[0];
    track.enabled = this.micEnabled;
    if (this.transceiver.sender.track !== track) await this.transceiver.sender.replaceTrack(track);
    this.sending = true;
    this._state(`${this.pc.connectionState} (speaker)`);
  }

  /** Back to the audience (media.demoted): the server demoted us already when the primary
   * attendee was deleted; the DELETE makes sure, and the mic goes off. */
  async demote() {
    const wasPromoted = this.promoted;
    this.primary = null;
    this.promoted = false;
    if (wasPromoted && this.location) {
      await fetch(`${this.location}/promotion`, { method: "DELETE" }).catch(() => {});
    }
    if (this.transceiver && this.transceiver.sender.track) await this.transceiver.sender.replaceTrack(null);
    this._releaseMic();
    this.sending = false;
    if (this.pc) this._state(`${this.pc.connectionState} (listener)`);
  }

  _attach(stream) {
    if (this.remote) this.remote.disconnect();
    // Chromium feeds a remote WebRTC stream to WebAudio only while a media element plays it:
    // play it muted and hear it through WebAudio (which also measures it).
    if (this.audioElement) {
      this.audioElement.srcObject = stream;
      this.audioElement.muted = true;
      this.audioElement.play().catch(() => {});
    }
    this.remote = new Probe(stream, { toSpeakers: true });
    if (this.hooks.onRemoteStream) this.hooks.onRemoteStream(stream);
  }

  setMicEnabled(on) {
    this.micEnabled = on;
    if (this.mic) for (const t of this.mic.getAudioTracks()) t.enabled = on;
  }

  micLevel() {
    return this.micProbe && this.micEnabled ? this.micProbe.level() : 0;
  }

  level() {
    return this.remote ? this.remote.level() : 0;
  }

  /** Live captions, while the host has them on: the WHIP session's "Transcripts" (the local
   * stand-in for Chime's transcript events; docs/media.md). Final results, oldest first. */
  async transcripts() {
    if (!this.location) return [];
    const response = await fetch(this.location, { headers: { Authorization: `Bearer ${this.token}` } });
    if (!response.ok) return [];
    const body = await response.json();
    return (body.Transcripts || []).filter((r) => !r.IsPartial);
  }

  dominantFrequency() {
    return this.remote ? this.remote.dominantFrequency() : null;
  }

  /** Per-person levels are a Chime feature; the local server sends one mixed track. */
  speakerLevels() {
    return null;
  }

  _releaseMic() {
    if (this.micProbe) this.micProbe.disconnect();
    if (this.mic) for (const t of this.mic.getTracks()) t.stop();
    this.mic = null;
    this.micProbe = null;
  }

  _delete(location, token) {
    // keepalive: the DELETE still goes out when the page is closing.
    fetch(location, { method: "DELETE", headers: { Authorization: `Bearer ${token}` }, keepalive: true }).catch(
      () => {},
    );
  }

  async stop() {
    this.primary = null;
    this.promoted = false;
    if (this.location) this._delete(this.location, this.token);
    if (this.pc) this.pc.close();
    if (this.remote) this.remote.disconnect();
    this._releaseMic();
    if (this.audioElement) this.audioElement.srcObject = null;
    this.pc = null;
    this.location = null;
    this.remote = null;
    this._state("off");
  }

  _state(text) {
    this.state = text;
    if (this.hooks.onState) this.hooks.onState(text);
  }
}
