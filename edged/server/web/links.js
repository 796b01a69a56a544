// Media links (docs/protocol.md, "Media links"): one RTCPeerConnection per link.
//
// A PublishLink is one viewer of the page's stream: the page offers, the viewer
// answers. A PlayLink is the page's end of a stream it plays: the publisher offers,
// the page answers. Both trickle their candidates and accept trickled ones (or none:
// edged's engine puts all of its candidates in its description). Signals of one link
// are handled strictly one after the other.

/** Rank H.264 first: constrained baseline, then baseline, packetization-mode 1 first. */
function codecRank(codec) {
  if (codec.mimeType.toLowerCase() !== "video/h264") return 10;
  const fmtp = codec.sdpFmtpLine ?? "";
  const profile = (/profile-level-id=([0-9a-f]{6})/i.exec(fmtp)?.[1] ?? "").toLowerCase();
  const modeRank = /packetization-mode=1/.test(fmtp) ? 0 : 4;
  const profileRank = profile.startsWith("42e0") ? 0 : profile.startsWith("4200") ? 1 : 2;
  return modeRank + profileRank;
}

/** The codec list with H.264 first (the others stay, in their order, as fallbacks). */
export function h264First(codecs) {
  return [...codecs].sort((a, b) => codecRank(a) - codecRank(b));
}

/** Whether a codec is H.264 (constrained) baseline, packetization-mode 1: what edged plays. */
function isBaselineH264(codec) {
  return codecRank(codec) <= 1;
}

/** False when this browser says it cannot decode H.264 (stock Firefox on Debian). */
export function canReceiveH264() {
  const codecs = RTCRtpReceiver.getCapabilities?.("video")?.codecs;
  return codecs === undefined || codecs.some((c) => c.mimeType.toLowerCase() === "video/h264");
}

/**
 * Make a video transceiver offer H.264 first, constrained baseline first (edged's engine
 * plays H.264 baseline; Chrome also has main and high profiles, which it does not).
 * Returns true when the offer will start with baseline H.264.
 */
export function preferH264(transceiver) {
  if (typeof transceiver.setCodecPreferences !== "function") return false;
  const lists = [RTCRtpSender.getCapabilities("video"), RTCRtpReceiver.getCapabilities("video")];
  for (const caps of lists) {
    const codecs = caps?.codecs ?? [];
    if (!codecs.some(isBaselineH264)) continue;
    try {
      transceiver.setCodecPreferences(h264First(codecs));
      return true;
    } catch {
      // this browser checks the list against the other capabilities: try those
    }
  }
  return false;
}

/** A candidate as the protocol carries it (exactly these three fields). */
export function candidateMessage(candidate) {
  if (candidate === null) return { candidate: "" };
  return {
    candidate: candidate.candidate,
    sdpMid: candidate.sdpMid ?? null,
    sdpMLineIndex: candidate.sdpMLineIndex ?? null,
  };
}

class Link extends EventTarget {
  /**
   * @param {object} options  linkId, streamId, iceServers, sendSignal(message)
   */
  constructor({ linkId, streamId, iceServers, sendSignal }) {
    super();
    this.linkId = linkId;
    this.streamId = streamId;
    this.sendSignal = sendSignal;
    this.pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
    this.closed = false;
    this.candidatesSent = [];
    this.candidatesReceived = [];
    this._queue = Promise.resolve();
    this._descriptionSent = false;
    this._early = []; // local candidates gathered before the description went out
    this._remoteEarly = [];
    this.pc.onicecandidate = (event) => this._localCandidate(event.candidate);
    this.pc.onconnectionstatechange = () => {
      this._emit("state", { state: this.pc.connectionState });
    };
  }

  _emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _localCandidate(candidate) {
    // Chrome also reports an empty candidate per m-line; only the final null counts.
    if (candidate !== null && !candidate.candidate) return;
    const message = candidateMessage(candidate);
    if (!this._descriptionSent) {
      this._early.push(message);
      return;
    }
    this._sendCandidate(message);
  }

  _sendCandidate(message) {
    if (this.closed) return;
    this.candidatesSent.push(message.candidate);
    this.sendSignal({ type: "signal", link_id: this.linkId, candidate: message });
  }

  _sendDescription() {
    const { type, sdp } = this.pc.localDescription;
    this.sendSignal({ type: "signal", link_id: this.linkId, description: { type, sdp } });
    this._descriptionSent = true;
    for (const message of this._early.splice(0)) this._sendCandidate(message);
  }

  /** Handle a `signal` from the other end (description and/or candidate), in order. */
  handleSignal(message) {
    this._queue = this._queue
      .then(() => this._handle(message))
      .catch((err) => this._emit("failure", { error: err }));
    return this._queue;
  }

  async _handle(message) {
    if (this.closed) return;
    if (message.description) await this._onDescription(message.description);
    if (message.candidate) await this._onCandidate(message.candidate);
  }

  async _onCandidate(candidate) {
    this.candidatesReceived.push(candidate.candidate);
    if (!this.pc.remoteDescription) {
      this._remoteEarly.push(candidate); // applied once the description is set
      return;
    }
    await this._addRemoteCandidate(candidate);
  }

  async _addRemoteCandidate(candidate) {
    if (!candidate.candidate) return; // the other end finished gathering
    await this.pc.addIceCandidate({
      candidate: candidate.candidate,
      sdpMid: candidate.sdpMid ?? undefined,
      sdpMLineIndex: candidate.sdpMLineIndex ?? undefined,
    });
  }

  async _setRemoteDescription(description) {
    await this.pc.setRemoteDescription(description);
    for (const candidate of this._remoteEarly.splice(0)) await this._addRemoteCandidate(candidate);
  }

  async _onDescription() {}

  close() {
    if (this.closed) return;
    this.closed = true;
    this.pc.onicecandidate = null;
    this.pc.onconnectionstatechange = null;
    this.pc.ontrack = null;
    this.pc.close();
  }
}

/** One viewer of the page's published stream: the page offers its tracks. */
export class PublishLink extends Link {
  constructor(options) {
    super(options);
    this.viewer = options.viewer;
    this.senders = [];
    for (const track of options.media.getTracks()) {
      const transceiver = this.pc.addTransceiver(track, {
        direction: "sendonly",
        streams: [options.media],
      });
      if (track.kind === "video") this.h264 = preferH264(transceiver);
      this.senders.push(transceiver.sender);
    }
  }

  /** Create and send the offer; candidates follow as they are gathered. */
  async offer() {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    if (!this.closed) this._sendDescription();
  }

  async _onDescription(description) {
    if (description.type !== "answer") return;
    await this._setRemoteDescription(description);
  }

  /** Send another track of the same kind (the camera was switched) without renegotiating. */
  async replaceTrack(track) {
    for (const sender of this.senders) {
      if (sender.track?.kind === track.kind) await sender.replaceTrack(track);
    }
  }
}

/**
 * The page's end of a played stream: the publisher offers, the page answers; or, in a
 * browser without H.264 (stock Firefox), the page offers what it can decode (VP8) with
 * its `play` request and the publisher answers (docs/protocol.md, viewer-offered links).
 */
export class PlayLink extends Link {
  constructor(options) {
    super(options);
    this.pc.ontrack = (event) => this._emit("track", { track: event.track });
  }

  /** The page's own offer (sound first, then video it can decode), for `play`. */
  async makeOffer() {
    this.pc.addTransceiver("audio", { direction: "recvonly" });
    const video = this.pc.addTransceiver("video", { direction: "recvonly" });
    const codecs = RTCRtpReceiver.getCapabilities?.("video")?.codecs;
    if (codecs && typeof video.setCodecPreferences === "function") {
      try {
        video.setCodecPreferences(codecs); // exactly what this browser says it decodes
      } catch {
        // a browser that checks the list differently offers its defaults
      }
    }
    await this.pc.setLocalDescription(await this.pc.createOffer());
    const { type, sdp } = this.pc.localDescription;
    return { type, sdp };
  }

  /** The `play` reply named the link: candidates gathered so far go out on it. */
  offered(linkId) {
    this.linkId = linkId;
    this._descriptionSent = true;
    for (const message of this._early.splice(0)) this._sendCandidate(message);
  }

  async _onDescription(description) {
    if (description.type === "answer") {
      if (this.pc.signalingState === "have-local-offer") await this._setRemoteDescription(description);
      return;
    }
    if (description.type !== "offer") return;
    await this._setRemoteDescription(description);
    for (const transceiver of this.pc.getTransceivers()) {
      if (transceiver.receiver.track?.kind !== "video") continue;
      if (canReceiveH264()) {
        preferH264(transceiver);
      } else {
        // Refuse the video plainly (its section is rejected), so the sound still plays.
        transceiver.stop();
        this._emit("codec-missing", { kind: "video", codec: "H.264" });
      }
    }
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    if (this.closed) return;
    this._sendDescription();
  }
}
