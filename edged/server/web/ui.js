// What the person sees: the room's state, the user and stream lists, one tile per
// played stream, the local preview, messages and the event log. No logic of the call
// lives here; app.js feeds this view from the Call's events.

import { PlayerState, PublisherState, RoomReason, RoomState, nameOf } from "./states.js";
import { TimeCodeReader } from "./timecode.js";

const ROOM_TEXT = {
  [RoomReason.LOGINING]: "Connecting…",
  [RoomReason.LOGINED]: "In the room",
  [RoomReason.LOGIN_FAILED]: "Could not join",
  [RoomReason.RECONNECTING]: "Reconnecting…",
  [RoomReason.RECONNECTED]: "In the room (reconnected)",
  [RoomReason.RECONNECT_FAILED]: "Connection lost",
  [RoomReason.KICK_OUT]: "Kicked out",
  [RoomReason.LOGOUT]: "Not in a room",
  [RoomReason.LOGOUT_FAILED]: "Left (logout not confirmed)",
};
const PLAYER_TEXT = ["stopped", "waiting for media…", "playing"];
const PUBLISHER_TEXT = ["not publishing", "publishing… (waiting for the server)", "publishing"];
const LOG_LIMIT = 400;

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function clockTime() {
  return new Date().toLocaleTimeString([], { hour12: false });
}

/** One played stream: its video, who publishes it, its state, quality and latency. */
export class Tile {
  constructor(streamId, stream) {
    this.streamId = streamId;
    this.root = element("article", { class: "tile", "data-stream-id": streamId });
    this.video = element("video", { playsinline: "", autoplay: "" });
    this.video.autoplay = true;
    this.video.playsInline = true;
    const caption = element("div", { class: "caption" });
    this.who = element("strong", { class: "who" });
    this.state = element("span", { class: "badge player-state" });
    this.quality = element("div", { class: "quality" });
    this.latency = element("div", { class: "latency", hidden: "" });
    this.notice = element("div", { class: "notice", hidden: "" });
    this.unmute = element("button", { type: "button", class: "unmute", hidden: "" }, "Sound is off: tap to hear");
    this.unmute.addEventListener("click", () => {
      this.video.muted = false;
      this.unmute.hidden = true;
      this.video.play().catch(() => {});
    });
    caption.append(this.who, element("span", { class: "stream-id" }, streamId), this.state);
    this.root.append(this.video, this.unmute, caption, this.notice, this.quality, this.latency);
    this.setStream(stream);
    this.setState(PlayerState.PLAY_REQUESTING, 0);
    this.reader = new TimeCodeReader(this.video);
    this.reader.start();
    this._latencyTimer = setInterval(() => this._showLatency(), 1000);
  }

  setStream(stream) {
    const user = stream.user ?? {};
    this.who.textContent = user.user_name || user.user_id || "?";
    this.root.dataset.userId = user.user_id ?? "";
    this.root.title = stream.extra_info || "";
  }

  setState(state, code, errors = null) {
    this.state.dataset.state = nameOf(PlayerState, state);
    const name = code && errors ? ` ${errors.describe(code).name}` : "";
    this.state.textContent = `${PLAYER_TEXT[state] ?? state}${code ? ` (${code}${name})` : ""}`;
    this.state.title = code && errors ? errors.text(code) : "";
  }

  attach(media) {
    if (this.video.srcObject !== media) this.video.srcObject = media;
    this.video.play().catch((err) => {
      if (err.name !== "NotAllowedError") return; // e.g. interrupted by a newer play()
      // Autoplay with sound refused (no click on the page yet): play muted, offer sound.
      this.video.muted = true;
      this.unmute.hidden = media.getAudioTracks().length === 0;
      this.video.play().catch(() => {});
    });
  }

  /** Say what the viewer misses and why (a codec this browser lacks). */
  setNotice(text) {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }

  setQuality(text) {
    this.quality.textContent = text;
  }

  /** Play at `volume` (0 … 1): turned down while the person holds to talk. */
  setVolume(volume) {
    this.video.volume = volume;
    this.root.dataset.ducked = volume < 1 ? "1" : "";
  }

  _showLatency() {
    const s = this.reader.summary();
    if (s === null) return;
    this.latency.hidden = false;
    this.latency.textContent = `time code: ${Math.round(s.last)} ms glass-to-glass (p50 ${Math.round(s.p50)} ms)`;
  }

  remove() {
    clearInterval(this._latencyTimer);
    this.reader.stop();
    this.video.srcObject = null;
    this.root.remove();
  }
}

export class View {
  constructor() {
    const $ = (id) => document.getElementById(id);
    this.roomState = $("room-state");
    this.roomDetail = $("room-detail");
    this.publisherState = $("publisher-state");
    this.publisherQuality = $("publisher-quality");
    this.users = $("users");
    this.streams = $("streams");
    this.tilesBox = $("tiles");
    this.message = $("message");
    this.logList = $("log");
    this.preview = $("preview");
    this.tiles = new Map();
    this.volume = 1;
    this.showRoom({ state: RoomState.DISCONNECTED, reason: RoomReason.LOGOUT, code: 0 });
    this.showPublisher(PublisherState.NO_PUBLISH, 0);
  }

  showRoom({ state, reason, code }, errors = null) {
    const stateName = nameOf(RoomState, state);
    const reasonName = nameOf(RoomReason, reason);
    this.roomState.dataset.state = stateName;
    this.roomState.dataset.reason = reasonName;
    this.roomState.dataset.code = String(code || 0);
    this.roomState.textContent = ROOM_TEXT[reason] ?? stateName;
    const codeText = code ? ` · ${code}${errors ? ` ${errors.describe(code).name}` : ""}` : "";
    this.roomDetail.textContent = `${stateName} · ${reasonName}${codeText}`;
    document.body.dataset.room = stateName;
  }

  showPublisher(state, code, errors = null) {
    this.publisherState.dataset.state = nameOf(PublisherState, state);
    const codeText = code ? ` (${code}${errors ? ` ${errors.describe(code).name}` : ""})` : "";
    this.publisherState.textContent = `${PUBLISHER_TEXT[state] ?? state}${codeText}`;
    if (state !== PublisherState.PUBLISHING) this.publisherQuality.textContent = "";
  }

  renderUsers(users, self) {
    const items = [];
    if (self) items.push(this._userItem({ user_id: self.user_id, user_name: self.user_name }, true));
    for (const user of users.values()) items.push(this._userItem(user, false));
    this.users.replaceChildren(...items);
  }

  _userItem(user, isSelf) {
    const li = element("li", { "data-user-id": user.user_id });
    li.append(element("strong", {}, user.user_name || user.user_id));
    if (user.user_name) li.append(" ", element("code", {}, user.user_id));
    if (isSelf) li.append(" ", element("em", {}, "(you)"));
    return li;
  }

  renderStreams(streams, own) {
    const items = [];
    if (own) items.push(this._streamItem(own, true));
    for (const stream of streams.values()) items.push(this._streamItem(stream, false));
    this.streams.replaceChildren(...items);
  }

  _streamItem(stream, isOwn) {
    const li = element("li", { "data-stream-id": stream.stream_id });
    li.append(element("code", {}, stream.stream_id), " by ", stream.user.user_name || stream.user.user_id);
    const kinds = [stream.video ? "video" : "", stream.audio ? "audio" : ""].filter(Boolean).join("+");
    if (kinds) li.append(" ", element("small", {}, kinds));
    if (isOwn) li.append(" ", element("em", {}, "(yours)"));
    if (stream.extra_info) li.append(element("div", { class: "extra" }, stream.extra_info));
    return li;
  }

  addTile(streamId, stream) {
    let tile = this.tiles.get(streamId);
    if (tile === undefined) {
      tile = new Tile(streamId, stream);
      tile.setVolume(this.volume);
      this.tiles.set(streamId, tile);
      this.tilesBox.append(tile.root);
    }
    this.tilesBox.dataset.count = String(this.tiles.size);
    return tile;
  }

  /** The volume of every played stream, and of those played later. */
  setVolume(volume) {
    this.volume = volume;
    for (const tile of this.tiles.values()) tile.setVolume(volume);
  }

  removeTile(streamId) {
    this.tiles.get(streamId)?.remove();
    this.tiles.delete(streamId);
    this.tilesBox.dataset.count = String(this.tiles.size);
  }

  clearTiles() {
    for (const streamId of [...this.tiles.keys()]) this.removeTile(streamId);
  }

  showMessage(text, kind = "error") {
    this.message.textContent = text;
    this.message.dataset.kind = kind;
    this.message.hidden = false;
  }

  clearMessage() {
    this.message.hidden = true;
    this.message.textContent = "";
  }

  log(text, kind = "info") {
    const li = element("li", { "data-kind": kind });
    li.append(element("time", {}, clockTime()), " ", text);
    this.logList.prepend(li);
    while (this.logList.childElementCount > LOG_LIMIT) this.logList.lastElementChild.remove();
  }
}
