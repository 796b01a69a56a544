// The page's controller: the join form (filled from the link's query), the local camera,
// and the Call's events turned into what the View shows.

import { Call } from "./call.js";
import { ErrorTable } from "./errors.js";
import { describeQuality } from "./quality.js";
import {
  PlayerState, PublisherState, RoomReason, RoomState, UpdateType, nameOf,
} from "./states.js";
import { TimeCodeSource } from "./timecode.js";
import { TalkButton, TalkMode, microphoneLive, playbackVolume } from "./talk.js";
import { View } from "./ui.js";

const FIELDS = ["server", "app", "room", "user", "name", "token", "stream", "source", "talk"];
const ID = /^[A-Za-z0-9_.-]+$/;
const STORAGE_KEY = "edged.join";

/** Open a local source: camera/mic through getUserMedia, or the time-code test pattern. */
async function openSource(kind) {
  if (kind === "timecode") {
    const source = new TimeCodeSource({ width: 640, height: 480, fps: 30 });
    source.start();
    return { media: source.stream, stop: () => source.stop(), kind };
  }
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error(
      "this page cannot use a camera or microphone here: open it over https:// (or on localhost)",
    );
  }
  const video = kind === "audio" ? false : { width: { ideal: 640 }, height: { ideal: 480 } };
  const audio = kind === "camera-video" ? false : { echoCancellation: true, noiseSuppression: true };
  const media = await navigator.mediaDevices.getUserMedia({ video, audio });
  return { media, stop: () => media.getTracks().forEach((t) => t.stop()), kind };
}

class App {
  constructor() {
    this.view = new View();
    this.errors = new ErrorTable();
    this.config = { apps: [], ice_servers: [], dev_mode: false };
    this.call = null;
    this.local = null; // {media, stop, kind}
    this.form = document.getElementById("join-form");
    this.inputs = Object.fromEntries(FIELDS.map((f) => [f, document.getElementById(f)]));
    this.buttons = Object.fromEntries(
      ["join", "leave", "camera", "publish", "unpublish", "copy-link"].map((id) => [
        id, document.getElementById(id),
      ]),
    );
    this.talk = new TalkButton(document.getElementById("talk-button"), document.getElementById("talk-state"));
  }

  async init() {
    this._fillForm();
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.join();
    });
    this.buttons.leave.addEventListener("click", () => this.leave());
    this.buttons.camera.addEventListener("click", () => this.togglePreview());
    this.buttons.publish.addEventListener("click", () => this.publish());
    this.buttons.unpublish.addEventListener("click", () => this.unpublish());
    this.buttons["copy-link"].addEventListener("click", () => this.copyLink());
    this.inputs.source.addEventListener("change", () => this.switchSource());
    this.inputs.talk.addEventListener("change", () => this._talkModeChanged());
    this.talk.addEventListener("change", () => this._applyTalk());
    // Closing the tab: tell the server at once, so the others see us leave now rather
    // than after the heartbeat timeout.
    window.addEventListener("pagehide", () => this.call?.client?.send({ type: "logout" }));
    this.inputs.user.addEventListener("input", () => {
      if (!this.inputs.stream.dataset.edited) this.inputs.stream.value = this._defaultStreamId();
    });
    this.inputs.stream.addEventListener("input", () => (this.inputs.stream.dataset.edited = "1"));
    const [config, errors] = await Promise.all([this._fetchConfig(), ErrorTable.load()]);
    this.errors = errors;
    if (config) this._useConfig(config);
    this._buttons();
  }

  // ---- the form ----------------------------------------------------------------------

  _fillForm() {
    const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? "{}");
    const query = new URLSearchParams(location.search);
    for (const field of FIELDS) {
      const value = query.get(field) ?? saved[field];
      if (value) this.inputs[field].value = value;
    }
    if (!this.inputs.server.value) this.inputs.server.value = this._defaultServer();
    if (!this.inputs.stream.value) this.inputs.stream.value = this._defaultStreamId();
    else this.inputs.stream.dataset.edited = "1";
    if (!Object.values(TalkMode).includes(this.inputs.talk.value)) this.inputs.talk.value = TalkMode.OPEN;
    if (query.has("token")) {
      // Keep the token in this tab only, not in the address bar or its history.
      this._save();
      query.delete("token");
      const rest = query.toString();
      history.replaceState(null, "", `${location.pathname}${rest ? `?${rest}` : ""}`);
    }
  }

  _defaultServer() {
    return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  }

  _defaultStreamId() {
    const user = this.inputs.user.value.trim();
    return user ? `${user}-cam` : "";
  }

  _values() {
    return Object.fromEntries(FIELDS.map((f) => [f, this.inputs[f].value.trim()]));
  }

  _save() {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(this._values()));
  }

  async _fetchConfig() {
    try {
      const response = await fetch("/api/config", { cache: "no-cache" });
      return response.ok ? await response.json() : null;
    } catch {
      return null;
    }
  }

  _useConfig(config) {
    this.config = config;
    const list = document.getElementById("apps");
    list.replaceChildren(...config.apps.map((id) => Object.assign(document.createElement("option"), { value: id })));
    if (!this.inputs.app.value && config.apps.length === 1) this.inputs.app.value = config.apps[0];
    document.getElementById("dev-note").hidden = !config.dev_mode;
    document.getElementById("version").textContent = `edged ${config.version}`;
  }

  _buttons() {
    const state = this.call?.room.state ?? RoomState.DISCONNECTED;
    const inRoom = state !== RoomState.DISCONNECTED;
    const publishing = this.call?.publisher != null;
    this.buttons.join.disabled = inRoom;
    this.buttons.leave.disabled = !inRoom;
    this.buttons.publish.disabled = state !== RoomState.CONNECTED || publishing;
    this.buttons.unpublish.disabled = !publishing;
    this.buttons.camera.textContent = this.local ? "Stop camera" : "Start camera";
    this.buttons.camera.disabled = publishing;
    for (const field of ["server", "app", "room", "user", "name", "token"]) this.inputs[field].disabled = inRoom;
    this.inputs.stream.disabled = publishing;
    const withMicrophone = publishing && this.call.publisher.media.getAudioTracks().length > 0;
    this.talk.setShown(withMicrophone && this.inputs.talk.value === TalkMode.HOLD);
  }

  _check(values) {
    for (const [field, limit] of [["app", 64], ["room", 128], ["user", 64]]) {
      if (!ID.test(values[field]) || values[field].length > limit) {
        return `${field}: 1 to ${limit} characters of A-Z a-z 0-9 _ . -`;
      }
    }
    return null;
  }

  async _devToken(values) {
    const response = await fetch("/api/dev-token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ app_id: values.app, room_id: values.room, user_id: values.user }),
    });
    const body = await response.json();
    if (!response.ok) throw Object.assign(new Error(body.error.message), { code: body.error.code });
    return body.token;
  }

  copyLink() {
    const v = this._values();
    const query = new URLSearchParams({ app: v.app, room: v.room });
    if (v.server !== this._defaultServer()) query.set("server", v.server);
    const link = `${location.origin}${location.pathname}?${query}`;
    navigator.clipboard?.writeText(link).catch(() => {});
    this.view.log(`invite link (each person needs a token, or dev mode): ${link}`);
  }

  // ---- joining -----------------------------------------------------------------------

  async join() {
    this.view.clearMessage();
    const values = this._values();
    const problem = this._check(values);
    if (problem) {
      this.view.showMessage(problem);
      return;
    }
    try {
      if (!values.token && this.config.dev_mode) {
        values.token = await this._devToken(values);
        this.inputs.token.value = values.token;
        this.view.log("development mode: got a token from the server");
      }
    } catch (err) {
      this.view.showMessage(err.code ? this.errors.text(err.code, err.message) : err.message);
      return;
    }
    this._save();
    const call = new Call({ serverUrl: values.server, iceServers: this.config.ice_servers });
    this.call = call;
    window.edged.call = call;
    this._wire(call);
    this._buttons();
    try {
      await call.join({
        app_id: values.app, room_id: values.room, user_id: values.user,
        user_name: values.name, token: values.token,
      });
    } catch (err) {
      if (!err.code) this.view.showMessage(err.message);
    }
  }

  async leave() {
    await this.call?.leave();
  }

  // ---- the local camera and publishing -----------------------------------------------

  async togglePreview() {
    if (this.local) {
      this.local.stop();
      this.local = null;
      this.view.preview.srcObject = null;
      this.view.preview.parentElement.dataset.live = "";
    } else {
      await this._openLocal();
    }
    this._buttons();
  }

  async _openLocal() {
    try {
      this.local = await openSource(this.inputs.source.value);
    } catch (err) {
      this.view.showMessage(`camera/microphone: ${err.message}`);
      return false;
    }
    this._applyTalk();
    this.view.preview.srcObject = this.local.media;
    this.view.preview.parentElement.dataset.live = this.local.kind;
    this.view.preview.play().catch(() => {});
    this.view.log(`local ${this.local.kind}: ${this.local.media.getTracks().map((t) => t.label || t.kind).join(", ")}`);
    return true;
  }

  async switchSource() {
    if (!this.local || this.local.kind === this.inputs.source.value) return;
    const old = this.local;
    this.local = null;
    if (!(await this._openLocal())) {
      this.local = old;
      return;
    }
    await this.call?.replaceMedia(this.local.media);
    old.stop();
    this._buttons();
  }

  // ---- talk modes (talk.js) ----------------------------------------------------------

  _talkModeChanged() {
    this._save();
    this.talk.stop();
    this._applyTalk();
    this._buttons();
    const hold = this.inputs.talk.value === TalkMode.HOLD;
    this.view.log(hold ? "hold to talk: the microphone sends silence until the button is held" : "open microphone");
  }

  /** Open or silence the microphone's tracks, and turn played sound down while talking. */
  _applyTalk() {
    const mode = this.inputs.talk.value;
    const live = microphoneLive(mode, this.talk.talking);
    for (const track of this.local?.media.getAudioTracks() ?? []) track.enabled = live;
    this.view.setVolume(playbackVolume(mode, this.talk.talking));
  }

  async publish() {
    if (!this.call) return;
    if (!this.local && !(await this._openLocal())) return;
    const streamId = this.inputs.stream.value.trim();
    if (!ID.test(streamId)) {
      this.view.showMessage("stream id: 1 to 128 characters of A-Z a-z 0-9 _ . -");
      return;
    }
    try {
      await this.call.startPublishing(streamId, this.local.media, { extraInfo: `web page (${this.local.kind})` });
    } catch {
      // shown by publisher_state_update
    }
    this._buttons();
  }

  async unpublish() {
    try {
      await this.call?.stopPublishing();
    } catch (err) {
      this.view.log(`stop publishing: ${err.message}`, "warn");
    }
    this._buttons();
  }

  // ---- the call's events -------------------------------------------------------------

  _wire(call) {
    const on = (type, handler) => call.addEventListener(type, ({ detail }) => {
      if (call === this.call) handler(detail);
    });
    const view = this.view;
    const errors = this.errors;
    const refreshLists = () => {
      const self = call.params ? { user_id: call.params.user_id, user_name: call.params.user_name } : null;
      view.renderUsers(call.users, call.room.state === RoomState.DISCONNECTED ? null : self);
      const own = call.publisher?.state === PublisherState.PUBLISHING
        ? { stream_id: call.publisher.streamId, user: self, extra_info: call.publisher.extraInfo,
            video: call.publisher.media.getVideoTracks().length > 0, audio: call.publisher.media.getAudioTracks().length > 0 }
        : null;
      view.renderStreams(call.streams, own);
    };

    on("room_state_changed", ({ reason, code }) => {
      const what = `room ${call.roomId}: ${nameOf(RoomReason, reason)}`;
      view.log(code ? `${what} — ${errors.text(code)}` : what, code ? "error" : "info");
      if (code && reason !== RoomReason.RECONNECTING) view.showMessage(errors.text(code));
      if (reason === RoomReason.RECONNECTING) view.showMessage("Connection to the server lost; reconnecting…", "warn");
      if (reason === RoomReason.RECONNECTED || reason === RoomReason.LOGINED) view.clearMessage();
    });
    on("room_state_update", () => {
      view.showRoom(call.room, errors);
      if (call.room.state === RoomState.DISCONNECTED) view.clearTiles();
      refreshLists();
      this._buttons();
    });
    on("room_user_update", ({ updateType, users }) => {
      const names = users.map((u) => u.user_name || u.user_id).join(", ");
      view.log(`${names} ${updateType === UpdateType.ADD ? "joined" : "left"}`);
      refreshLists();
    });
    on("room_stream_update", ({ updateType, streams, reason }) => {
      for (const s of streams) {
        const who = s.user.user_name || s.user.user_id;
        view.log(updateType === UpdateType.ADD ? `${who} publishes ${s.stream_id}` : `${s.stream_id} ended (${reason})`);
      }
      refreshLists();
    });
    on("stream_extra_info_update", refreshLists);
    on("player_added", ({ streamId, stream }) => {
      const tile = view.addTile(streamId, stream);
      let size = "";
      tile.video.addEventListener("resize", () => {
        const now = `${tile.video.videoWidth}x${tile.video.videoHeight}`;
        if (now !== size) view.log(`${streamId}: video ${now}`);
        size = now;
      });
    });
    on("player_removed", ({ streamId }) => view.removeTile(streamId));
    on("player_media", ({ streamId, media }) => view.tiles.get(streamId)?.attach(media));
    on("player_codec_missing", ({ streamId, kind, codec }) => {
      view.tiles.get(streamId)?.setNotice(`This browser cannot play ${codec} ${kind}: sound only.`);
      view.log(`${streamId}: no ${codec} in this browser, ${kind} refused`);
    });
    on("player_state_update", ({ streamId, state, code }) => {
      view.tiles.get(streamId)?.setState(state, code, errors);
      const text = `play ${streamId}: ${nameOf(PlayerState, state)}`;
      view.log(code ? `${text} — ${errors.text(code)}` : text, code ? "error" : "info");
    });
    on("player_recv_video_first_frame", ({ streamId }) => view.log(`${streamId}: first video frame`));
    on("player_recv_audio_first_frame", ({ streamId }) => view.log(`${streamId}: first audio`));
    on("player_quality_update", ({ streamId, quality }) => {
      view.tiles.get(streamId)?.setQuality(describeQuality(quality));
    });
    on("publisher_state_update", ({ streamId, state, code }) => {
      view.showPublisher(state, code, errors);
      const text = `publish ${streamId}: ${nameOf(PublisherState, state)}`;
      view.log(code ? `${text} — ${errors.text(code)}` : text, code ? "error" : "info");
      if (code) view.showMessage(errors.text(code));
      refreshLists();
      this._buttons();
    });
    on("publisher_quality_update", ({ quality }) => {
      view.publisherQuality.textContent = describeQuality(quality);
    });
    on("room_token_will_expire", ({ remainingS }) => this._tokenExpiring(remainingS));
    on("server_error", ({ code, message }) => view.log(errors.text(code, message), "error"));
    on("note", ({ text }) => view.log(text, "warn"));
    on("broadcast", ({ user, message }) => view.log(`${user.user_name || user.user_id}: ${message}`));
  }

  async _tokenExpiring(remainingS) {
    if (!this.config.dev_mode) {
      this.view.showMessage(
        `Your token expires in ${Math.round(remainingS)} s; the server will then end the session. ` +
          "Open a new join link to stay.",
        "warn",
      );
      return;
    }
    try {
      const token = await this._devToken(this._values());
      await this.call.renewToken(token);
      this.inputs.token.value = token;
      this.view.log("development mode: token renewed");
    } catch (err) {
      this.view.log(`token renewal failed: ${err.message}`, "error");
    }
  }
}

const app = new App();
window.edged = { app, view: app.view, call: null };
app.init();
