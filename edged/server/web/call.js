// The call as the page lives it: the room, its users and streams, the page's published
// stream and every stream it plays, with the states, numbers and events of edged's
// call model (docs/api.md): room_state_update, room_state_changed, room_user_update,
// room_stream_update, publisher_state_update, player_state_update, the quality
// updates, room_token_will_expire and the first-frame events.

import { Codes, ProtocolError, RoomClient } from "./protocol.js";
import {
  PlayerState, PublisherState, RoomReason, RoomState, UpdateType,
} from "./states.js";
import { Player, Publisher } from "./streams.js";

export { PlayerState, PublisherState, RoomReason, RoomState, UpdateType, nameOf } from "./states.js";

const ROOM_COUNT_EXCEEDED = 1002001;
const ALREADY_PUBLISHING = 1003030;

export class Call extends EventTarget {
  /**
   * @param {object} options  serverUrl (ws:// or wss://), iceServers (fallback before
   *   login), qualityIntervalMs (3000), timers (RoomClient timers)
   */
  constructor({ serverUrl, iceServers = [], qualityIntervalMs = 3000, timers = {} }) {
    super();
    this.serverUrl = serverUrl;
    this.iceServers = iceServers;
    this.qualityIntervalMs = qualityIntervalMs;
    this.timers = timers;
    this.client = null;
    this.params = null;
    this.room = { state: RoomState.DISCONNECTED, reason: RoomReason.LOGOUT, code: 0 };
    this.users = new Map();
    this.streams = new Map();
    this.players = new Map();
    this.publisher = null;
    this._qualityTimer = null;
  }

  get roomId() {
    return this.params?.room_id ?? "";
  }

  get userId() {
    return this.params?.user_id ?? "";
  }

  _emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail: { roomId: this.roomId, ...detail } }));
  }

  _note(text) {
    this._emit("note", { text });
  }

  _setRoom(state, reason, code = 0) {
    this.room = { state, reason, code };
    this._emit("room_state_changed", { reason, code });
    this._emit("room_state_update", { state, code });
  }

  // ---- joining and leaving -----------------------------------------------------------

  /** Log in ({app_id, room_id, user_id, user_name, token}); resolves once CONNECTED. */
  async join(params) {
    if (this.client !== null) throw new ProtocolError(ROOM_COUNT_EXCEEDED, "already in a room");
    this.params = { ...params, user_update: true };
    if (!this.params.token) delete this.params.token;
    this._setRoom(RoomState.CONNECTING, RoomReason.LOGINING);
    const client = new RoomClient(this.serverUrl, this.timers);
    this.client = client;
    // A client that was replaced or is logging out speaks no more for this call.
    const mine = (handler) => ({ detail }) => {
      if (client === this.client) handler(detail);
    };
    client.addEventListener("push", mine((msg) => this._onPush(msg)));
    client.addEventListener("connection", mine((change) => this._onConnection(change)));
    client.addEventListener("error", mine((error) => this._emit("server_error", error)));
    try {
      this._loggedIn(await client.login(this.params));
    } catch (err) {
      client.close();
      this.client = null;
      this._setRoom(RoomState.DISCONNECTED, RoomReason.LOGIN_FAILED, err.code);
      throw err;
    }
    this._setRoom(RoomState.CONNECTED, RoomReason.LOGINED);
    this._startQuality();
  }

  _loggedIn(result) {
    if (result.ice_servers?.length) this.iceServers = result.ice_servers;
    this.loginResult = result;
  }

  /** Stop publishing and playing, log out and wait for the server to confirm. */
  async leave() {
    const client = this.client;
    if (client === null) return;
    this.client = null;
    this._teardown();
    await client.logout();
    this._setRoom(RoomState.DISCONNECTED, RoomReason.LOGOUT);
  }

  _teardown(code = 0) {
    clearInterval(this._qualityTimer);
    for (const player of this.players.values()) player.stop(false);
    this.players.clear();
    if (this.publisher !== null) {
      this.publisher.closeLinks();
      this.publisher.setState(PublisherState.NO_PUBLISH, code);
      this.publisher = null;
    }
    this.users.clear();
    this.streams.clear();
  }

  _ended(reason, code) {
    const client = this.client;
    this.client = null;
    client?.close();
    this._teardown(code);
    this._setRoom(RoomState.DISCONNECTED, reason, code);
  }

  /** Renew the session's token before it expires (a development-mode page does). */
  async renewToken(token) {
    const result = await this._requireClient().request({ type: "renew_token", token });
    if (result?.ice_servers?.length) this.iceServers = result.ice_servers; // new TURN credentials
    this.params.token = token;
  }

  _requireClient() {
    if (this.client === null || this.room.state === RoomState.DISCONNECTED) {
      throw new ProtocolError(Codes.NOT_LOGGED_IN, "not in a room");
    }
    return this.client;
  }

  // ---- publishing --------------------------------------------------------------------

  /** Publish `media` (a MediaStream) as `streamId`; resolves once PUBLISHING. */
  async startPublishing(streamId, media, { extraInfo = "" } = {}) {
    this._requireClient();
    if (this.publisher !== null) throw new ProtocolError(ALREADY_PUBLISHING, "already publishing");
    const publisher = new Publisher(this, streamId, media, extraInfo);
    this.publisher = publisher;
    publisher.setState(PublisherState.PUBLISH_REQUESTING);
    try {
      await publisher.announce();
    } catch (err) {
      if (this.publisher === publisher) this.publisher = null;
      publisher.setState(PublisherState.NO_PUBLISH, err.code);
      throw err;
    }
    publisher.setState(PublisherState.PUBLISHING);
    this._emit("publisher_captured_video_first_frame", { streamId });
  }

  async stopPublishing() {
    const publisher = this.publisher;
    if (publisher === null) return;
    this.publisher = null;
    publisher.closeLinks();
    try {
      await this._requireClient().request({ type: "unpublish", stream_id: publisher.streamId });
    } finally {
      publisher.setState(PublisherState.NO_PUBLISH);
    }
  }

  /** Switch the published media (another camera or source) without a new offer. */
  async replaceMedia(media) {
    if (this.publisher !== null) await this.publisher.replaceMedia(media);
  }

  // ---- server pushes -----------------------------------------------------------------

  _onPush(msg) {
    switch (msg.type) {
      case "room_user_update":
        return this._onUsers(msg);
      case "room_stream_update":
        return this._onStreams(msg);
      case "stream_extra_info_update":
        for (const s of msg.streams) if (this.streams.has(s.stream_id)) this.streams.set(s.stream_id, s);
        return this._emit("stream_extra_info_update", { streams: msg.streams });
      case "link_open":
        if (this.publisher?.streamId === msg.stream_id) {
          this.publisher.openLink(msg).catch((err) => this._note(`offer failed: ${err.message}`));
        }
        return undefined;
      case "link_closed":
        return this._onLinkClosed(msg);
      case "signal":
        return this._onSignal(msg);
      case "token_will_expire":
        return this._emit("room_token_will_expire", { remainingS: msg.remaining_s });
      case "kicked_out":
        return this._ended(RoomReason.KICK_OUT, msg.code);
      case "broadcast":
        return this._emit("broadcast", { user: msg.user, message: msg.message });
      case "custom_command":
        return this._emit("custom_command", { user: msg.user, command: msg.command });
      default:
        return undefined;
    }
  }

  _onUsers(msg) {
    const fresh = [];
    for (const user of msg.users) {
      if (msg.update_type === UpdateType.ADD) {
        if (!this.users.has(user.user_id)) fresh.push(user);
        this.users.set(user.user_id, user);
      } else if (this.users.delete(user.user_id)) {
        fresh.push(user);
      }
    }
    if (fresh.length) this._emit("room_user_update", { updateType: msg.update_type, users: fresh });
  }

  _onStreams(msg) {
    const fresh = [];
    for (const stream of msg.streams) {
      if (msg.update_type === UpdateType.ADD) {
        if (!this.streams.has(stream.stream_id)) fresh.push(stream);
        this.streams.set(stream.stream_id, stream);
      } else if (this.streams.delete(stream.stream_id)) {
        fresh.push(stream);
      }
    }
    if (!fresh.length) return;
    this._emit("room_stream_update", { updateType: msg.update_type, streams: fresh, reason: msg.reason });
    for (const stream of fresh) {
      if (msg.update_type === UpdateType.ADD) this._play(stream);
      else this._unplay(stream.stream_id);
    }
  }

  _play(stream) {
    let player = this.players.get(stream.stream_id);
    if (player === undefined) {
      player = new Player(this, stream);
      this.players.set(stream.stream_id, player);
      this._emit("player_added", { streamId: stream.stream_id, stream, media: player.media });
    }
    if (player.state === PlayerState.NO_PLAY) player.start();
    else player.request();
  }

  _unplay(streamId) {
    const player = this.players.get(streamId);
    if (player === undefined) return;
    this.players.delete(streamId);
    player.stop(false);
    this._emit("player_removed", { streamId });
  }

  /** Stop playing one stream (its tile stays until the stream leaves). */
  stopPlaying(streamId) {
    this.players.get(streamId)?.stop(true);
  }

  /** Play a stream again after stopPlaying. */
  startPlaying(streamId) {
    const player = this.players.get(streamId);
    if (player !== undefined && player.stopped) player.start();
  }

  _onLinkClosed(msg) {
    if (this.publisher?.links.has(msg.link_id)) {
      this.publisher.closeLink(msg.link_id);
      return;
    }
    for (const player of this.players.values()) {
      if (player.linkId === msg.link_id) player.linkClosed();
    }
  }

  _onSignal(msg) {
    const link = this.publisher?.links.get(msg.link_id);
    if (link !== undefined) {
      link.handleSignal(msg);
      return;
    }
    this.players.get(msg.stream_id)?.onSignal(msg);
  }

  // ---- losing and regaining the server -----------------------------------------------

  _onConnection({ state, code }) {
    if (state === "interrupted") {
      this._setRoom(RoomState.CONNECTING, RoomReason.RECONNECTING, code);
      this.publisher?.setState(PublisherState.PUBLISH_REQUESTING);
      for (const player of this.players.values()) {
        if (!player.stopped) player.setState(PlayerState.PLAY_REQUESTING);
      }
    } else if (state === "resumed") {
      this._setRoom(RoomState.CONNECTED, RoomReason.RECONNECTED);
      this.publisher?.setState(PublisherState.PUBLISHING);
      for (const player of this.players.values()) {
        if (!player.stopped && player.receiving) player.setState(PlayerState.PLAYING);
      }
    } else if (state === "session_lost") {
      this._loginAgain(code);
    } else if (state === "gave_up") {
      this._ended(RoomReason.RECONNECT_FAILED, code);
    } else if (state === "ended" && this.client !== null) {
      this._ended(RoomReason.KICK_OUT, this.room.code || Codes.NETWORK_INTERRUPTED);
    }
  }

  /** The server no longer knows the session: log in afresh (the others see it). */
  async _loginAgain(code) {
    this._note(`the server ended the session (${code}); logging in again`);
    this.publisher?.closeLinks();
    for (const player of this.players.values()) player.sessionLost();
    let result;
    try {
      result = await this.client.login(this.params);
    } catch (err) {
      this._ended(RoomReason.RECONNECT_FAILED, err.code);
      return;
    }
    this._loggedIn(result);
    // Who left and what ended while the page was away.
    const users = new Set((result.users ?? []).map((u) => u.user_id));
    const gone = [...this.users.values()].filter((u) => !users.has(u.user_id));
    const streams = new Set((result.streams ?? []).map((s) => s.stream_id));
    const ended = [...this.streams.values()].filter((s) => !streams.has(s.stream_id));
    if (ended.length) this._onStreams({ update_type: UpdateType.DELETE, streams: ended, reason: "disconnected" });
    if (gone.length) this._onUsers({ update_type: UpdateType.DELETE, users: gone });
    this._setRoom(RoomState.CONNECTED, RoomReason.RECONNECTED);
    if (this.publisher !== null) {
      try {
        await this.publisher.announce();
        this.publisher.setState(PublisherState.PUBLISHING);
      } catch (err) {
        this.publisher.setState(PublisherState.NO_PUBLISH, err.code);
        this.publisher = null;
      }
    }
    for (const player of this.players.values()) player.request();
  }

  // ---- quality -----------------------------------------------------------------------

  _startQuality() {
    clearInterval(this._qualityTimer);
    this._qualityTimer = setInterval(() => this._measure(), this.qualityIntervalMs);
  }

  async _measure() {
    const publisher = this.publisher;
    if (publisher !== null && publisher.state === PublisherState.PUBLISHING) {
      const reports = await Promise.all([...publisher.links.values()].map((l) => l.pc.getStats()));
      const targetFps = publisher.media.getVideoTracks()[0]?.getSettings().frameRate ?? 0;
      const quality = publisher.meter.update(reports, { targetFps });
      this._emit("publisher_quality_update", { streamId: publisher.streamId, quality });
    }
    for (const player of this.players.values()) {
      if (player.link === null) continue;
      const quality = player.meter.update(await player.link.pc.getStats());
      this._emit("player_quality_update", { streamId: player.streamId, quality });
    }
  }
}
