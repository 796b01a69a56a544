// The frame time code of docs/timecode.md: read it from a video, draw it into a canvas.
//
// The code is 96 black/white cells in the top fifth of the picture (6 rows x 16 columns)
// carrying the capture time (wall-clock ms) and a frame sequence number, guarded by a
// CRC. edged's test pattern draws it; TimeCodeSource below draws the same layout in the
// browser, so that a browser's stream can be measured the same way as the engine's.

const SYNC = 0xb2;
const SEQUENCE_MODULO = 2 ** 24;
const BAND_ROWS = 6;
const COLUMNS = 16;
const ROWS_PER_HEIGHT = 30;

/** CRC-16/CCITT-FALSE (poly 0x1021, init 0xffff). */
export function crc16(bytes) {
  let crc = 0xffff;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let k = 0; k < 8; k++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc;
}

/** The 12 bytes of a code: sync, 48-bit capture time, 24-bit sequence, CRC. */
export function encodeBytes(captureMs, sequence) {
  const bytes = new Uint8Array(12);
  bytes[0] = SYNC;
  let t = Math.floor(captureMs);
  for (let k = 6; k >= 1; k--) {
    bytes[k] = t % 256;
    t = Math.floor(t / 256);
  }
  const seq = ((sequence % SEQUENCE_MODULO) + SEQUENCE_MODULO) % SEQUENCE_MODULO;
  bytes[7] = (seq >> 16) & 0xff;
  bytes[8] = (seq >> 8) & 0xff;
  bytes[9] = seq & 0xff;
  const crc = crc16(bytes.subarray(1, 10));
  bytes[10] = crc >> 8;
  bytes[11] = crc & 0xff;
  return bytes;
}

/**
 * Read the code from a 2-D context holding a full frame of W x H pixels.
 * Returns {captureMs, sequence}, or null when the frame has no valid code.
 */
export function decodeTimeCode(ctx, W, H) {
  if (W < 32 || H < 60) return null;
  const rows = Math.floor((5.75 * H) / ROWS_PER_HEIGHT) + 1;
  const px = ctx.getImageData(0, 0, W, rows).data;
  const bytes = new Uint8Array(12);
  for (let i = 0; i < 96; i++) {
    const r = Math.floor(i / COLUMNS);
    const c = i % COLUMNS;
    const x0 = Math.floor(((c + 0.25) * W) / COLUMNS);
    const x1 = Math.max(x0 + 1, Math.floor(((c + 0.75) * W) / COLUMNS));
    const y0 = Math.floor(((r + 0.25) * H) / ROWS_PER_HEIGHT);
    const y1 = Math.max(y0 + 1, Math.floor(((r + 0.75) * H) / ROWS_PER_HEIGHT));
    let sum = 0;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const p = (y * W + x) * 4;
        sum += 0.299 * px[p] + 0.587 * px[p + 1] + 0.114 * px[p + 2];
      }
    }
    if (sum / ((x1 - x0) * (y1 - y0)) >= 128) bytes[i >> 3] |= 0x80 >> (i & 7);
  }
  if (bytes[0] !== SYNC) return null;
  if (crc16(bytes.subarray(1, 10)) !== ((bytes[10] << 8) | bytes[11])) return null;
  let captureMs = 0;
  for (let k = 1; k <= 6; k++) captureMs = captureMs * 256 + bytes[k];
  const sequence = (bytes[7] << 16) | (bytes[8] << 8) | bytes[9];
  return { captureMs, sequence };
}

/** Draw the code for (captureMs, sequence) into the top fifth of a W x H context. */
export function drawTimeCode(ctx, W, H, captureMs, sequence) {
  const bytes = encodeBytes(captureMs, sequence);
  for (let i = 0; i < 96; i++) {
    const r = Math.floor(i / COLUMNS);
    const c = i % COLUMNS;
    const x0 = Math.floor((c * W) / COLUMNS);
    const x1 = Math.floor(((c + 1) * W) / COLUMNS);
    const y0 = Math.floor((r * H) / ROWS_PER_HEIGHT);
    const y1 = Math.floor(((r + 1) * H) / ROWS_PER_HEIGHT);
    ctx.fillStyle = bytes[i >> 3] & (0x80 >> (i & 7)) ? "#fff" : "#000";
    ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
  }
}

const BARS = ["#bfbfbf", "#bfbf00", "#00bfbf", "#00bf00", "#bf00bf", "#bf0000", "#0000bf"];

/**
 * A camera stand-in: a canvas-captured video track of colour bars, a moving block and
 * the time code, at a steady frame rate. Each frame is stamped with Date.now() when it
 * is drawn, just before it is handed to the track.
 */
export class TimeCodeSource {
  constructor({ width = 640, height = 480, fps = 30 } = {}) {
    this.width = width;
    this.height = height;
    this.fps = fps;
    this.sequence = 0;
    this.canvas = document.createElement("canvas");
    this.canvas.width = width;
    this.canvas.height = height;
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: false });
    this.stream = this.canvas.captureStream(0);
    this.track = this.stream.getVideoTracks()[0];
    this._timer = null;
    this._start = 0;
  }

  start() {
    this._start = performance.now();
    this._tick();
  }

  _tick() {
    const slot = this.sequence;
    this._draw(slot);
    this.track.requestFrame?.();
    this.sequence += 1;
    const next = this._start + (this.sequence * 1000) / this.fps;
    this._timer = setTimeout(() => this._tick(), Math.max(0, next - performance.now()));
  }

  _draw(sequence) {
    const { ctx, width: W, height: H } = this;
    const band = Math.floor((BAND_ROWS * H) / ROWS_PER_HEIGHT);
    const lane = Math.floor((H * 3) / 4);
    ctx.fillStyle = "#282828";
    ctx.fillRect(0, 0, W, H);
    BARS.forEach((colour, i) => {
      const x0 = Math.floor((i * W) / BARS.length);
      const x1 = Math.floor(((i + 1) * W) / BARS.length);
      ctx.fillStyle = colour;
      ctx.fillRect(x0, band, x1 - x0, lane - band);
    });
    const size = Math.max(2, Math.floor(((H - lane) * 3) / 5));
    const travel = W - size;
    const x = Math.floor((sequence * travel) / (2 * this.fps)) % (travel + 1);
    ctx.fillStyle = "#fff";
    ctx.fillRect(x, lane + Math.floor((H - lane - size) / 2), size, size);
    drawTimeCode(ctx, W, H, Date.now(), sequence);
  }

  stop() {
    clearTimeout(this._timer);
    this.track.stop();
  }
}

/**
 * Reads the time code of every frame a <video> presents and keeps the latency of each
 * (display time minus capture time, on the wall clock: sender and receiver on the
 * same machine, or on clocks kept in step by NTP/PTP).
 */
export class TimeCodeReader {
  constructor(video, { keep = 20000 } = {}) {
    this.video = video;
    this.keep = keep;
    this.samples = [];
    this.receiveSamples = []; // capture to arrival of the frame's last packet (WebRTC only)
    this.frames = 0;
    this.decoded = 0;
    this.missing = 0; // sequence numbers skipped between frames read
    this.last = null;
    this.canvas = document.createElement("canvas");
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    this._stopped = false;
    this._handle = null;
  }

  start() {
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
    const onFrame = (_now, metadata) => {
      if (this._stopped) return;
      this._read(metadata);
      this._handle = this.video.requestVideoFrameCallback(onFrame);
    };
    this._handle = this.video.requestVideoFrameCallback(onFrame);
  }

  _read(metadata) {
    const W = metadata.width || this.video.videoWidth;
    const H = metadata.height || this.video.videoHeight;
    this.frames += 1;
    if (!W || !H) return;
    // Frames without a code are probed once a second only: reading costs a canvas copy.
    if (this.decoded === 0 && this.frames > 30 && this.frames % 30 !== 0) return;
    if (this.canvas.width !== W || this.canvas.height !== H) {
      this.canvas.width = W;
      this.canvas.height = H;
    }
    this.ctx.drawImage(this.video, 0, 0, W, H);
    const code = decodeTimeCode(this.ctx, W, H);
    if (code === null) return;
    const shownAt = performance.timeOrigin + (metadata.expectedDisplayTime ?? performance.now());
    const latencyMs = shownAt - code.captureMs;
    if (this.last !== null) {
      const gap = (code.sequence - this.last.sequence + SEQUENCE_MODULO) % SEQUENCE_MODULO;
      if (gap > 0 && gap < SEQUENCE_MODULO / 2) this.missing += gap - 1;
    }
    this.decoded += 1;
    this.last = { ...code, latencyMs };
    this.samples.push(latencyMs);
    if (this.samples.length > this.keep) this.samples.splice(0, this.samples.length - this.keep);
    if (typeof metadata.receiveTime === "number") {
      this.receiveSamples.push(performance.timeOrigin + metadata.receiveTime - code.captureMs);
      if (this.receiveSamples.length > this.keep) this.receiveSamples.shift();
    }
  }

  /** Latency percentiles (ms) over the kept samples, or null without any. */
  summary() {
    if (!this.samples.length) return null;
    const sorted = [...this.samples].sort((a, b) => a - b);
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    return {
      count: sorted.length,
      p50: at(0.5),
      p95: at(0.95),
      last: this.last.latencyMs,
      missing: this.missing,
    };
  }

  /** Forget the samples so far (e.g. after a warm-up). */
  reset() {
    this.samples = [];
    this.receiveSamples = [];
    this.missing = 0;
  }

  stop() {
    this._stopped = true;
    if (this._handle !== null) this.video.cancelVideoFrameCallback?.(this._handle);
  }
}
