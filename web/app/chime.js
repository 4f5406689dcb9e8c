// The Chime implementation of the media interface (see media.js), for deployed stages.
// amazon-chime-sdk-js ships CommonJS only: `make web` bundles the pinned version
// (web/package-lock.json) with esbuild into vendor/amazon-chime-sdk.min.js, an IIFE
// that defines window.ChimeSDK. It is loaded only when a join reply names Chime.

const BUNDLE = new URL("../vendor/amazon-chime-sdk.min.js", import.meta.url);
let loading = null;

export function loadChimeSdk() {
  if (window.ChimeSDK) return Promise.resolve(window.ChimeSDK);
  if (loading === null) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = BUNDLE.toString();
      script.onload = () =>
        window.ChimeSDK ? resolve(window.ChimeSDK) : reject(new Error("the Chime bundle defined no ChimeSDK"));
      script.onerror = () => {
        loading = null;
        reject(new Error(`cannot load ${BUNDLE.pathname}: run \`make web\` to build the Chime SDK bundle`));
      };
      document.head.append(script);
    });
  }
  return loading;
}

/** The SDK's MeetingSessionConfiguration from a join reply's `media` ({Meeting, Attendee}). */
export function chimeConfiguration(sdk, media) {
  return new sdk.MeetingSessionConfiguration({ Meeting: media.Meeting }, { Attendee: media.Attendee });
}

/** MeetingSessionCredentials of a primary attendee (`media.promoted`), for promoteToPrimaryMeeting. */
export function primaryCredentials(sdk, media) {
  const credentials = new sdk.MeetingSessionCredentials();
  credentials.attendeeId = media.Attendee.AttendeeId;
  credentials.externalUserId = media.Attendee.ExternalUserId;
  credentials.joinToken = media.Attendee.JoinToken;
  return credentials;
}

/** Our user id from a Chime ExternalUserId (chalicelib.media.external_user_id: "u:" id or "b:" base64url). */
export function userIdFromExternal(external) {
  const i = (external || "").indexOf(":");
  const prefix = external.slice(0, i);
  const body = external.slice(i + 1);
  if (prefix === "u") return body;
  if (prefix === "b") {
    const b64 = body.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
  }
  return null;
}

export class ChimeMedia {
  constructor(media, hooks = {}) {
    this.kind = "chime";
    this.media = media;
    this.hooks = hooks;
    this.session = null;
    this.sending = false;
    this.started = false;
    this.primary = null; // media.promoted credentials while on stage from a replica
    this.promoted = false;
    this.micEnabled = true;
    this.levels = new Map(); // user id -> volume 0..1 from Chime's volume indicators
    this.state = "off";
  }

  async start({ send }) {
    const sdk = await loadChimeSdk();
    this.sdk = sdk;
    this.configuration = chimeConfiguration(sdk, this.media);
    const logger = new sdk.ConsoleLogger("sohbet", sdk.LogLevel.WARN);
    const devices = new sdk.DefaultDeviceController(logger);
    this.session = new sdk.DefaultMeetingSession(this.configuration, logger, devices);
    const av = this.session.audioVideo;
    av.addObserver({
      audioVideoDidStart: () => {
        this.started = true;
        this._state(this.sending ? "connected (speaker)" : "connected (listener)");
        // Promotion needs a connected session (else AudioServiceUnavailable): one asked for
        // before the start, or lost with a reconnection, is made now.
        if (this.primary && !this.promoted) this._promote().catch((e) => this._state(`promotion failed: ${e.message}`));
      },
      audioVideoDidStop: (status) => this._state(`stopped (${status.statusCode()})`),
      // DeleteAttendee of the primary attendee, demoteFromPrimaryMeeting, or any disconnection:
      // after a disconnection the SDK wants the same credentials again (replicatedmeetings docs).
      audioVideoWasDemotedFromPrimaryMeeting: (status) => this._demoted(status),
    });
    av.realtimeSubscribeToAttendeeIdPresence((attendeeId, present, externalUserId) => {
      const userId = userIdFromExternal(externalUserId || "");
      if (!present) {
        av.realtimeUnsubscribeFromVolumeIndicator(attendeeId);
        if (userId) this.levels.delete(userId);
        return;
      }
      av.realtimeSubscribeToVolumeIndicator(attendeeId, (_id, volume, muted) => {
        if (userId && volume !== null) this.levels.set(userId, muted ? 0 : volume);
      });
    });
    // Live captions arrive as Chime's transcript events (data messages); keep the final results.
    this.captionResults = [];
    if (av.transcriptionController) {
      av.transcriptionController.subscribeToTranscriptEvent((event) => {
        for (const r of event.results || []) {
          if (r.isPartial) continue;
          const text = (r.alternatives && r.alternatives[0] && r.alternatives[0].transcript) || "";
          this.captionResults = [...this.captionResults, { ResultId: r.resultId, Alternatives: [{ Transcript: text }] }].slice(-20);
        }
      });
    }
    if (this.hooks.audioElement) await av.bindAudioElement(this.hooks.audioElement);
    if (send) await this._startMic();
    this._state("connecting");
    av.start();
  }

  async _startMic() {
    const av = this.session.audioVideo;
    const inputs = await av.listAudioInputDevices();
    await av.startAudioInput(inputs.length ? inputs[0].deviceId : null);
    this.sending = true;
    this.setMicEnabled(this.micEnabled);
  }

  /** A role change keeps the attendee (its capability changes at Chime); a move brings a new one. */
  async update(media, { send }) {
    if (media.Attendee.AttendeeId !== this.media.Attendee.AttendeeId) {
      await this.stop();
      this.media = media;
      await this.start({ send });
      return;
    }
    if (send && !this.sending) await this._startMic();
    if (!send && this.sending) await this._stopMic();
  }

  /** Promote the replica connection with a primary attendee's credentials (media.promoted):
   * https://aws.github.io/amazon-chime-sdk-js/modules/replicatedmeetings.html */
  async promote(media) {
    this.primary = media;
    if (this.started) await this._promote();
  }

  async _promote() {
    const media = this.primary;
    const status = await this.session.audioVideo.promoteToPrimaryMeeting(primaryCredentials(this.sdk, media));
    if (status.statusCode() !== this.sdk.MeetingSessionStatusCode.OK) {
      throw new Error(`promotion refused (status ${status.statusCode()})`);
    }
    this.promoted = true;
    if (!this.sending) await this._startMic();
    this._state("connected (speaker)");
  }

  /** Back to the audience (media.demoted): the primary attendee is gone; stop sending. */
  async demote() {
    this.primary = null;
    if (this.session && this.promoted) this.session.audioVideo.demoteFromPrimaryMeeting();
    this.promoted = false;
    await this._stopMic();
  }

  async _demoted(status) {
    this.promoted = false;
    await this._stopMic();
    // DeleteAttendee of the primary attendee: for good. Any other cause (a disconnection): the
    // SDK asks for a promotion with the same credentials again, made on the next start.
    if (status.statusCode() === this.sdk.MeetingSessionStatusCode.AudioAuthenticationRejected) this.primary = null;
  }

  async _stopMic() {
    if (this.session && this.sending) await this.session.audioVideo.stopAudioInput();
    this.sending = false;
  }

  setMicEnabled(on) {
    this.micEnabled = on;
    if (!this.session || !this.sending) return;
    if (on) this.session.audioVideo.realtimeUnmuteLocalAudio();
    else this.session.audioVideo.realtimeMuteLocalAudio();
  }

  async transcripts() {
    return this.captionResults || [];
  }

  micLevel() {
    const me = userIdFromExternal(this.media.Attendee.ExternalUserId || "");
    return (me && this.levels.get(me)) || 0;
  }

  level() {
    let max = 0;
    for (const v of this.levels.values()) max = Math.max(max, v);
    return max;
  }

  dominantFrequency() {
    return null;
  }

  speakerLevels() {
    return this.levels;
  }

  async stop() {
    this.primary = null;
    this.promoted = false;
    this.started = false;
    if (this.session) {
      const av = this.session.audioVideo;
      av.stop();
      if (this.sending) await av.stopAudioInput();
    }
    this.session = null;
    this.sending = false;
    this._state("off");
  }

  _state(text) {
    this.state = text;
    if (this.hooks.onState) this.hooks.onState(text);
  }
}
