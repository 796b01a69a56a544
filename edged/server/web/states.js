// The states and numbers of edged's call model (docs/api.md, product contract): the page
// shows and logs them with the same names as the engine and the MQTT topics.

export const RoomState = Object.freeze({ DISCONNECTED: 0, CONNECTING: 1, CONNECTED: 2 });
export const RoomReason = Object.freeze({
  LOGINING: 0, LOGINED: 1, LOGIN_FAILED: 2, RECONNECTING: 3, RECONNECTED: 4,
  RECONNECT_FAILED: 5, KICK_OUT: 6, LOGOUT: 7, LOGOUT_FAILED: 8,
});
export const PublisherState = Object.freeze({ NO_PUBLISH: 0, PUBLISH_REQUESTING: 1, PUBLISHING: 2 });
export const PlayerState = Object.freeze({ NO_PLAY: 0, PLAY_REQUESTING: 1, PLAYING: 2 });
export const UpdateType = Object.freeze({ ADD: 0, DELETE: 1 });

/** The name of an enum value, e.g. nameOf(RoomState, 2) === "CONNECTED". */
export function nameOf(enumeration, value) {
  return Object.keys(enumeration).find((key) => enumeration[key] === value) ?? String(value);
}
