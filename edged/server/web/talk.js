// Talk modes for intercom use (docs/web.md, "Talking to a device"): an open microphone,
// or hold to talk. In hold-to-talk mode the published microphone sends silence (its
// track is disabled: no new offer) except while the person holds the button, and the
// sound the page plays is ducked meanwhile, so that the device's speaker, heard by this
// page's microphone, does not go round between the two.

export const TalkMode = Object.freeze({ OPEN: "open", HOLD: "hold" });

/** The volume of every played stream while the person holds to talk (−20 dB). */
export const TALK_DUCK_VOLUME = 0.1;

/** Whether the microphone goes out, in `mode`, with the button held or not. */
export function microphoneLive(mode, talking) {
  return mode !== TalkMode.HOLD || talking;
}

/** The volume of played streams, in `mode`, with the button held or not. */
export function playbackVolume(mode, talking) {
  return mode === TalkMode.HOLD && talking ? TALK_DUCK_VOLUME : 1;
}

/**
 * The "Hold to talk" button: held with a pointer (mouse, pen, finger) or the space bar
 * while it has the focus. Releasing, cancelling, the page losing focus or being hidden
 * ends talking. Emits `change` with {talking} on every change; shows its state
 * (aria-pressed, `data-talking`, the status text).
 */
export class TalkButton extends EventTarget {
  constructor(button, status) {
    super();
    this.button = button;
    this.status = status;
    this.talking = false;
    const start = (event) => {
      event.preventDefault();
      this.start();
    };
    const stop = () => this.stop();
    button.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return; // the main button, a pen or a finger only
      button.setPointerCapture?.(event.pointerId); // the release comes here, wherever it is
      button.focus();
      start(event);
    });
    for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
      button.addEventListener(type, stop);
    }
    // Browsers without pointer events; and no long-press menu or emulated clicks.
    button.addEventListener("touchstart", start, { passive: false });
    button.addEventListener("touchend", stop);
    button.addEventListener("touchcancel", stop);
    button.addEventListener("contextmenu", (event) => event.preventDefault());
    button.addEventListener("keydown", (event) => {
      if (event.code !== "Space" && event.key !== " ") return;
      if (!event.repeat) start(event);
      else event.preventDefault();
    });
    button.addEventListener("keyup", (event) => {
      if (event.code === "Space" || event.key === " ") {
        event.preventDefault();
        this.stop();
      }
    });
    button.addEventListener("blur", stop);
    window.addEventListener("blur", stop);
    window.addEventListener("pagehide", stop);
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) this.stop();
    });
    this._show();
  }

  /** Show or hide the button (hiding it ends talking). */
  setShown(shown) {
    if (!shown) this.stop();
    this.button.hidden = !shown;
    this.status.hidden = !shown;
  }

  start() {
    if (this.talking || this.button.hidden || this.button.disabled) return;
    this._set(true);
  }

  stop() {
    if (this.talking) this._set(false);
  }

  _set(talking) {
    this.talking = talking;
    this._show();
    this.dispatchEvent(new CustomEvent("change", { detail: { talking } }));
  }

  _show() {
    this.button.setAttribute("aria-pressed", String(this.talking));
    this.button.dataset.talking = this.talking ? "1" : "";
    this.status.textContent = this.talking ? "talking…" : "microphone off: hold to talk";
    this.status.dataset.talking = this.talking ? "1" : "";
  }
}
