// The room signaling protocol of docs/protocol.md, as the page speaks it.
//
// RoomClient owns one logged-in session: one WebSocket at a time, requests matched to
// their replies by id, heartbeats that acknowledge the last `seq` received, and, when
// the socket drops, a new socket that resumes the session (silently to the others).
// Server pushes are handed on in order as "push" events; changes of the connection as
// "connection" events: interrupted, resumed, session_lost, gave_up, ended.

export const PROTOCOL_VERSION = 1;

/** Codes the page itself uses (their meaning comes from the server's table). */
export const Codes = Object.freeze({
  NOT_LOGGED_IN: 1000002,
  REQUEST_TIMEOUT: 1000009,
  CONNECT_FAILED: 1002030,
  LOGIN_TIMEOUT: 1002031,
  NETWORK_INTERRUPTED: 1002051,
  RECONNECT_GAVE_UP: 1002053,
  RESUME_FAILED: 1002054,
});

/** A refusal or failure carrying one of edged's error codes. */
export class ProtocolError extends Error {
  constructor(code, message = "") {
    super(message || `error ${code}`);
    this.code = code;
  }
}

export class RoomClient extends EventTarget {
  /**
   * @param {string} url  the server's WebSocket URL (ws:// or wss://, path /ws)
   * @param {object} timers  requestMs, connectMs, retryMinMs, retryMaxMs, giveUpMs
   */
  constructor(url, timers = {}) {
    super();
    this.url = url;
    this.timers = {
      requestMs: 10000,
      connectMs: 5000,
      retryMinMs: 250,
      retryMaxMs: 5000,
      giveUpMs: 120000,
      ...timers,
    };
    this.ws = null;
    this.result = null; // the login result while the session lives
    this.lastSeq = 0;
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject, timer}
    this._heartbeatTimer = null;
    this._closing = false;
    this._ready = false; // logged in or resumed on the current socket
    this._room = null; // {app_id, room_id} of the last login
  }

  get connected() {
    return (
      this._ready && this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.result !== null
    );
  }

  // ---- connecting --------------------------------------------------------------------

  /** The URL with the room as ?app=…&room=… (the server ignores them; a balancer in
   * front of several nodes may hash them, docs/scaling.md). */
  _roomUrl() {
    if (!this._room) return this.url;
    const url = new URL(this.url);
    url.searchParams.set("app", this._room.app_id);
    url.searchParams.set("room", this._room.room_id);
    return url.toString();
  }

  _open() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this._roomUrl());
      } catch (err) {
        reject(new ProtocolError(Codes.CONNECT_FAILED, `${this.url}: ${err.message}`));
        return;
      }
      const timer = setTimeout(() => {
        ws.close();
        reject(new ProtocolError(Codes.CONNECT_FAILED, `${this.url}: no answer`));
      }, this.timers.connectMs);
      ws.onopen = () => {
        clearTimeout(timer);
        this._adopt(ws);
        resolve(ws);
      };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new ProtocolError(Codes.CONNECT_FAILED, `cannot reach ${this.url}`));
      };
    });
  }

  _adopt(ws) {
    this.ws = ws;
    ws.onmessage = (event) => this._receive(event.data);
    ws.onclose = () => {
      if (ws === this.ws) this._lost();
    };
    ws.onerror = () => {};
  }

  /** Connect and log in; resolves with the login result, rejects with ProtocolError. */
  async login(fields) {
    this._closing = false;
    this._room = { app_id: fields.app_id, room_id: fields.room_id };
    await this._open();
    this.lastSeq = 0;
    try {
      this.result = await this._request(
        { type: "login", version: PROTOCOL_VERSION, ...fields },
        Codes.LOGIN_TIMEOUT,
      );
    } catch (err) {
      this._dropSocket();
      throw err;
    }
    this._ready = true;
    this._startHeartbeats();
    return this.result;
  }

  // ---- requests ----------------------------------------------------------------------

  /** Send a request and resolve with its result; a refusal rejects with ProtocolError. */
  request(message) {
    if (!this.connected) {
      return Promise.reject(
        new ProtocolError(Codes.NETWORK_INTERRUPTED, "not connected to the room server"),
      );
    }
    return this._request(message, Codes.REQUEST_TIMEOUT);
  }

  /** Send without waiting (the server replies only when it fails: an "error" event). */
  send(message) {
    if (this.ws !== null && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  _request(message, timeoutCode) {
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ProtocolError(timeoutCode, `no reply to ${message.type}`));
      }, this.timers.requestMs);
      this._pending.set(id, { resolve, reject, timer });
      if (!this.send({ ...message, id })) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(new ProtocolError(Codes.NETWORK_INTERRUPTED, "the connection is down"));
      }
    });
  }

  // ---- receiving ---------------------------------------------------------------------

  _receive(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof msg.seq === "number") {
      if (msg.seq <= this.lastSeq) return; // replayed after a resume: seen already
      this.lastSeq = msg.seq;
    }
    if (msg.type === "reply") {
      const pending = msg.id != null ? this._pending.get(msg.id) : undefined;
      if (pending) {
        this._pending.delete(msg.id);
        clearTimeout(pending.timer);
        if (msg.ok) pending.resolve(msg.result ?? {});
        else pending.reject(new ProtocolError(msg.error.code, msg.error.message));
      } else if (!msg.ok) {
        this._emit("error", { code: msg.error.code, message: msg.error.message });
      }
      return;
    }
    if (msg.type === "kicked_out") this._closing = true;
    this._emit("push", msg);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // ---- heartbeats --------------------------------------------------------------------

  _startHeartbeats() {
    clearTimeout(this._heartbeatTimer);
    const beat = async () => {
      if (this._closing || this.result === null) return;
      if (this.connected) {
        const ws = this.ws;
        try {
          await this._request({ type: "heartbeat", ack: this.lastSeq }, Codes.REQUEST_TIMEOUT);
        } catch (err) {
          // No reply in time on an open socket: it is dead without knowing it yet.
          if (err.code === Codes.REQUEST_TIMEOUT && ws === this.ws) ws.close();
        }
      }
      const interval = (this.result?.heartbeat_interval_s ?? 10) * 1000;
      this._heartbeatTimer = setTimeout(beat, interval);
    };
    this._heartbeatTimer = setTimeout(beat, (this.result.heartbeat_interval_s ?? 10) * 1000);
  }

  // ---- losing and resuming -----------------------------------------------------------

  _failPending(code) {
    for (const [id, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(new ProtocolError(code, "the connection was lost"));
      this._pending.delete(id);
    }
  }

  _lost() {
    this.ws = null;
    this._ready = false;
    this._failPending(Codes.NETWORK_INTERRUPTED);
    if (this._closing) {
      if (this.result !== null) {
        this.result = null;
        this._emit("connection", { state: "ended" });
      }
      return;
    }
    if (this.result !== null) {
      this._emit("connection", { state: "interrupted", code: Codes.NETWORK_INTERRUPTED });
      this._recover();
    }
  }

  async _recover() {
    const deadline = Date.now() + this.timers.giveUpMs;
    let delay = this.timers.retryMinMs;
    while (!this._closing && Date.now() < deadline) {
      let ws;
      try {
        ws = await this._open();
      } catch {
        await sleep(delay);
        delay = Math.min(delay * 2, this.timers.retryMaxMs);
        continue;
      }
      try {
        this.result = await this._request(
          {
            type: "resume",
            version: PROTOCOL_VERSION,
            resume_token: this.result.resume_token,
            last_seq: this.lastSeq,
          },
          Codes.LOGIN_TIMEOUT,
        );
      } catch (err) {
        if (err.code === Codes.NETWORK_INTERRUPTED || err.code === Codes.LOGIN_TIMEOUT) {
          if (ws === this.ws) this._dropSocket();
          await sleep(delay);
          continue;
        }
        this._dropSocket();
        this.result = null;
        this._emit("connection", { state: "session_lost", code: err.code });
        return;
      }
      this._ready = true;
      this._emit("connection", { state: "resumed" });
      return;
    }
    if (!this._closing) {
      this.result = null;
      this._emit("connection", { state: "gave_up", code: Codes.RECONNECT_GAVE_UP });
    }
  }

  /** Close the socket on purpose (tests and the "drop connection" tool use it). */
  dropConnection() {
    if (this.ws !== null) this.ws.close();
  }

  // ---- closing -----------------------------------------------------------------------

  /** Send the logout and wait for its reply (or a timeout), then close. */
  async logout() {
    this._closing = true;
    if (this.connected) {
      try {
        await this._request({ type: "logout" }, Codes.REQUEST_TIMEOUT);
      } catch {
        // closing anyway
      }
    }
    this.close();
  }

  close() {
    this._closing = true;
    this._ready = false;
    this.result = null;
    clearTimeout(this._heartbeatTimer);
    this._failPending(Codes.NETWORK_INTERRUPTED);
    this._dropSocket();
  }

  _dropSocket() {
    const ws = this.ws;
    this.ws = null;
    if (ws !== null) {
      ws.onclose = null;
      ws.onmessage = null;
      ws.close();
    }
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
