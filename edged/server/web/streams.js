// The page's published stream and the streams it plays: one PublishLink per viewer of
// the former, one PlayLink for each of the latter, with their states and quality meters.
// A Call (call.js) owns them and hands them the server's messages.

import { PlayLink, PublishLink, canReceiveH264 } from "./links.js";
import { PlayerMeter, PublisherMeter } from "./quality.js";
import { PlayerState, PublisherState } from "./states.js";

const VIEWER_LIMIT_REACHED = 1004020;
const ALREADY_PLAYING = 1004021;
const PLAYER_COUNT_EXCEEDED = 1004001;
const PLAY_RETRY_MS = 1000;

/** A stream the page plays: its link, its media for a tile, its state and quality. */
export class Player {
  constructor(call, stream) {
    this.call = call;
    this.streamId = stream.stream_id;
    this.stream = stream;
    this.state = PlayerState.NO_PLAY;
    this.code = 0;
    this.linkId = null;
    this.link = null;
    this.media = new MediaStream();
    this.meter = new PlayerMeter();
    this.stopped = false;
    this._requesting = false;
    this._retry = null;
  }

  setState(state, code = 0) {
    if (state === this.state && code === this.code) return;
    this.state = state;
    this.code = code;
    this.call._emit("player_state_update", { streamId: this.streamId, state, code });
  }

  start() {
    this.stopped = false;
    this.setState(PlayerState.PLAY_REQUESTING);
    this.request();
  }

  async request() {
    if (this.stopped || this.linkId !== null || this._requesting) return;
    this._requesting = true;
    try {
      const message = { type: "play", stream_id: this.streamId };
      // Without H.264 the page makes the offer (VP8), which the publisher answers.
      const offering = canReceiveH264() ? null : this._newLink();
      if (offering !== null) message.description = await offering.makeOffer();
      const result = await this.call.client.request(message);
      if (!this.stopped && this.linkId === null) this.linkId = result.link_id;
      if (offering !== null && offering === this.link) offering.offered(result.link_id);
    } catch (err) {
      if (this.link !== null && this.link.linkId === null) this._closeLink();
      if (err.code === VIEWER_LIMIT_REACHED || err.code === PLAYER_COUNT_EXCEEDED) {
        this.stopped = true;
        this.setState(PlayerState.NO_PLAY, err.code);
      } else if (err.code !== ALREADY_PLAYING) {
        this.call._note(`play ${this.streamId} waits (${err.code})`);
      }
    } finally {
      this._requesting = false;
    }
  }

  /** A `signal` of this stream's link: the publisher's offer, or its candidates. */
  onSignal(message) {
    if (this.stopped) return;
    if (this.linkId === null) this.linkId = message.link_id; // the offer overtook the reply
    if (message.link_id !== this.linkId) return;
    if (message.description?.type === "offer") this._newLink();
    this.link?.handleSignal(message);
  }

  _newLink() {
    this._closeLink();
    const link = new PlayLink({
      linkId: this.linkId, // null while the page's own offer waits for its play reply
      streamId: this.streamId,
      iceServers: this.call.iceServers,
      sendSignal: (m) => this.call.client?.send(m),
    });
    this.link = link;
    link.addEventListener("track", ({ detail }) => this._onTrack(detail.track));
    link.addEventListener("state", ({ detail }) => {
      if (link === this.link && detail.state === "failed") this._rebuild();
    });
    link.addEventListener("failure", ({ detail }) => {
      this.call._note(`play ${this.streamId}: ${detail.error.message}`);
    });
    link.addEventListener("codec-missing", ({ detail }) => {
      this.call._emit("player_codec_missing", { streamId: this.streamId, ...detail });
    });
    return link;
  }

  _onTrack(track) {
    for (const old of this.media.getTracks().filter((t) => t.kind === track.kind)) {
      this.media.removeTrack(old);
    }
    this.media.addTrack(track);
    this.call._emit("player_media", { streamId: this.streamId, media: this.media });
    const arrived = () => {
      if (this.stopped || this.link === null) return;
      this.setState(PlayerState.PLAYING);
      this.call._emit(`player_recv_${track.kind}_first_frame`, { streamId: this.streamId });
    };
    if (!track.muted) arrived();
    else track.addEventListener("unmute", arrived, { once: true });
  }

  get receiving() {
    return this.link !== null && this.link.pc.connectionState === "connected";
  }

  _closeLink() {
    if (this.link !== null) this.link.close();
    this.link = null;
    for (const track of this.media.getTracks()) this.media.removeTrack(track);
  }

  /** The link ended (stream restarted, publisher reconnected): ask for a new one. */
  linkClosed() {
    this._closeLink();
    this.linkId = null;
    if (this.stopped) return;
    this.setState(PlayerState.PLAY_REQUESTING);
    this._scheduleRequest(0);
  }

  async _rebuild() {
    this.call._note(`play ${this.streamId}: connection failed, asking again`);
    this._closeLink();
    if (this.linkId !== null) {
      this.linkId = null;
      try {
        await this.call.client.request({ type: "stop_play", stream_id: this.streamId });
      } catch {
        // the server may have closed the link already
      }
    }
    if (this.stopped) return;
    this.setState(PlayerState.PLAY_REQUESTING);
    this._scheduleRequest(PLAY_RETRY_MS);
  }

  _scheduleRequest(delay) {
    clearTimeout(this._retry);
    this._retry = setTimeout(() => this.request(), delay);
  }

  /** The server forgot the session (and so the link): start over after the new login. */
  sessionLost() {
    this._closeLink();
    this.linkId = null;
    if (!this.stopped) this.setState(PlayerState.PLAY_REQUESTING);
  }

  /** Stop for good; `tell` sends stop_play (not needed when the stream has ended). */
  stop(tell) {
    this.stopped = true;
    clearTimeout(this._retry);
    const hadLink = this.linkId !== null;
    this._closeLink();
    this.linkId = null;
    if (tell && hadLink && this.call.client?.connected) {
      this.call.client.request({ type: "stop_play", stream_id: this.streamId }).catch(() => {});
    }
    this.setState(PlayerState.NO_PLAY);
  }
}

/** The page's published stream: its media and one PublishLink per viewer. */
export class Publisher {
  constructor(call, streamId, media, extraInfo) {
    this.call = call;
    this.streamId = streamId;
    this.media = media;
    this.extraInfo = extraInfo;
    this.state = PublisherState.NO_PUBLISH;
    this.code = 0;
    this.links = new Map();
    this.meter = new PublisherMeter();
  }

  setState(state, code = 0) {
    if (state === this.state && code === this.code) return;
    this.state = state;
    this.code = code;
    this.call._emit("publisher_state_update", { streamId: this.streamId, state, code });
  }

  announce() {
    const video = this.media.getVideoTracks().length > 0;
    const audio = this.media.getAudioTracks().length > 0;
    return this.call.client.request({
      type: "publish", stream_id: this.streamId, extra_info: this.extraInfo, video, audio,
    });
  }

  async openLink(message) {
    const link = new PublishLink({
      linkId: message.link_id,
      streamId: this.streamId,
      iceServers: this.call.iceServers,
      sendSignal: (m) => this.call.client?.send(m),
      media: this.media,
      viewer: message.user,
    });
    this.links.set(message.link_id, link);
    link.addEventListener("state", ({ detail }) => {
      if (detail.state === "failed") this.closeLink(message.link_id);
    });
    link.addEventListener("failure", ({ detail }) => {
      this.call._note(`publish ${this.streamId}: ${detail.error.message}`);
    });
    if (link.h264 === false) {
      this.call._note("this browser cannot offer baseline H.264: edged devices may not play it");
    }
    await link.offer();
  }

  closeLink(linkId) {
    const link = this.links.get(linkId);
    if (link === undefined) return;
    this.links.delete(linkId);
    link.close();
  }

  closeLinks() {
    for (const linkId of [...this.links.keys()]) this.closeLink(linkId);
  }

  async replaceMedia(media) {
    this.media = media;
    for (const link of this.links.values()) {
      for (const track of media.getTracks()) await link.replaceTrack(track);
    }
  }
}

