// Quality of published and played streams from RTCPeerConnection.getStats(), with the
// fields and levels of docs/quality.md. A meter keeps its previous sample, so rates
// and loss are over the last period; the first report of a meter has level UNKNOWN.

export const QualityLevel = Object.freeze({
  EXCELLENT: 0,
  GOOD: 1,
  MEDIUM: 2,
  BAD: 3,
  DIE: 4,
  UNKNOWN: 5,
});
export const LEVEL_NAMES = ["excellent", "good", "medium", "bad", "die", "unknown"];

const LOSS_STEPS = [0.01, 0.03, 0.08, 0.2];
const RTT_STEPS = [100, 200, 400, 800];
const FPS_STEPS = [0.9, 0.75, 0.5];

function grade(value, steps) {
  const index = steps.findIndex((limit) => value < limit);
  return index === -1 ? steps.length : index;
}

/** The level of docs/quality.md: the worst of the loss, rtt and frame-rate grades. */
export function qualityLevel({ rttMs = null, loss = 0, fps = 0, targetFps = 0, flowing = true }) {
  if (!flowing) return QualityLevel.DIE;
  let level = grade(loss, LOSS_STEPS);
  if (rttMs !== null) level = Math.max(level, grade(rttMs, RTT_STEPS));
  if (targetFps > 0) {
    const ratio = fps / targetFps;
    const fpsGrade = ratio >= FPS_STEPS[0] ? 0 : ratio >= FPS_STEPS[1] ? 1 : ratio >= FPS_STEPS[2] ? 2 : 3;
    level = Math.max(level, fpsGrade);
  }
  return level;
}

function codecName(report, codecId) {
  const codec = codecId ? report.get(codecId) : undefined;
  return codec ? codec.mimeType.split("/")[1] : "";
}

function increase(now, before) {
  if (before === undefined) return 0;
  return now >= before ? now - before : now; // a counter that went down restarted
}

/**
 * Publisher quality over all of its viewer links (one stats report per link): totals
 * of bytes, the worst viewer's rtt and loss, the viewer count.
 */
export class PublisherMeter {
  constructor() {
    this.previous = new Map(); // "link/ssrc" -> counters
    this.at = null;
    this.totalBytes = 0;
  }

  update(reports, { targetFps = 0 } = {}, now = performance.now()) {
    const dt = this.at === null ? 0 : (now - this.at) / 1000;
    const first = this.at === null;
    this.at = now;
    const q = {
      send_fps: 0, video_kbps: 0, audio_kbps: 0, rtt_ms: null, packet_loss_rate: 0,
      level: QualityLevel.UNKNOWN, codec: "", encoder: "", total_bytes_sent: 0,
      width: 0, height: 0, viewers: reports.length, limited_by: "",
    };
    const seen = new Map();
    let flowing = false;
    reports.forEach((report, index) => {
      for (const stat of report.values()) {
        if (stat.type === "outbound-rtp") {
          const key = `${index}/${stat.ssrc}`;
          const before = this.previous.get(key) ?? {};
          const bytes = increase(stat.bytesSent ?? 0, before.bytesSent);
          const packets = increase(stat.packetsSent ?? 0, before.packetsSent);
          seen.set(key, { bytesSent: stat.bytesSent ?? 0, packetsSent: stat.packetsSent ?? 0 });
          this.totalBytes += before.bytesSent === undefined ? stat.bytesSent ?? 0 : bytes;
          if (packets > 0) flowing = true;
          const kbps = dt > 0 ? (bytes * 8) / 1000 / dt : 0;
          if (stat.kind === "video") {
            q.video_kbps += kbps;
            q.send_fps = Math.max(q.send_fps, stat.framesPerSecond ?? 0);
            q.width = stat.frameWidth ?? q.width;
            q.height = stat.frameHeight ?? q.height;
            q.codec = codecName(report, stat.codecId) || q.codec;
            q.encoder = stat.encoderImplementation ?? q.encoder;
            if (stat.qualityLimitationReason && stat.qualityLimitationReason !== "none") {
              q.limited_by = stat.qualityLimitationReason;
            }
          } else {
            q.audio_kbps += kbps;
          }
        } else if (stat.type === "remote-inbound-rtp") {
          if (typeof stat.roundTripTime === "number") {
            q.rtt_ms = Math.max(q.rtt_ms ?? 0, stat.roundTripTime * 1000);
          }
          if (typeof stat.fractionLost === "number") {
            q.packet_loss_rate = Math.max(q.packet_loss_rate, stat.fractionLost);
          }
        }
      }
    });
    this.previous = seen;
    q.total_bytes_sent = this.totalBytes;
    if (!first && reports.length > 0) {
      q.level = qualityLevel({
        rttMs: q.rtt_ms, loss: q.packet_loss_rate, fps: q.send_fps, targetFps, flowing,
      });
    }
    return q;
  }
}

/** Player quality of one played stream, from its link's stats report. */
export class PlayerMeter {
  constructor() {
    this.previous = new Map(); // ssrc -> counters
    this.at = null;
    this.totalBytes = 0;
  }

  update(report, now = performance.now()) {
    const dt = this.at === null ? 0 : (now - this.at) / 1000;
    const first = this.at === null;
    this.at = now;
    const q = {
      recv_fps: 0, decode_fps: 0, video_kbps: 0, audio_kbps: 0, rtt_ms: null,
      packet_loss_rate: 0, delay_ms: null, level: QualityLevel.UNKNOWN, codec: "",
      decoder: "", total_bytes_received: 0, width: 0, height: 0,
    };
    const seen = new Map();
    let lost = 0;
    let received = 0;
    let flowing = false;
    for (const stat of report.values()) {
      if (stat.type === "inbound-rtp") {
        const before = this.previous.get(stat.ssrc) ?? {};
        const cur = {
          bytes: stat.bytesReceived ?? 0,
          packets: stat.packetsReceived ?? 0,
          lost: Math.max(0, stat.packetsLost ?? 0),
          frames: stat.framesReceived ?? 0,
          decoded: stat.framesDecoded ?? 0,
          jbDelay: stat.jitterBufferDelay ?? 0,
          jbCount: stat.jitterBufferEmittedCount ?? 0,
        };
        seen.set(stat.ssrc, cur);
        const bytes = increase(cur.bytes, before.bytes);
        this.totalBytes += before.bytes === undefined ? cur.bytes : bytes;
        const packets = increase(cur.packets, before.packets);
        if (packets > 0) flowing = true;
        received += packets;
        lost += increase(cur.lost, before.lost);
        const kbps = dt > 0 ? (bytes * 8) / 1000 / dt : 0;
        if (stat.kind === "video") {
          q.video_kbps += kbps;
          if (dt > 0) {
            q.recv_fps = increase(cur.frames, before.frames) / dt;
            q.decode_fps = increase(cur.decoded, before.decoded) / dt;
          }
          const emitted = increase(cur.jbCount, before.jbCount);
          if (emitted > 0) q.delay_ms = (increase(cur.jbDelay, before.jbDelay) / emitted) * 1000;
          q.width = stat.frameWidth ?? q.width;
          q.height = stat.frameHeight ?? q.height;
          q.codec = codecName(report, stat.codecId) || q.codec;
          q.decoder = stat.decoderImplementation ?? q.decoder;
        } else {
          q.audio_kbps += kbps;
          if (!q.codec) q.codec = codecName(report, stat.codecId);
        }
      } else if (stat.type === "candidate-pair" && stat.nominated && stat.state === "succeeded") {
        if (typeof stat.currentRoundTripTime === "number") q.rtt_ms = stat.currentRoundTripTime * 1000;
      }
    }
    this.previous = seen;
    q.total_bytes_received = this.totalBytes;
    q.packet_loss_rate = lost + received > 0 ? lost / (lost + received) : 0;
    if (!first) q.level = qualityLevel({ rttMs: q.rtt_ms, loss: q.packet_loss_rate, flowing });
    return q;
  }
}

/** One short line for a tile: "H264 640x480 30 fps 812 kbit/s rtt 2 ms loss 0 % · excellent". */
export function describeQuality(q) {
  const parts = [];
  if (q.codec) parts.push(q.codec);
  if (q.width && q.height) parts.push(`${q.width}x${q.height}`);
  const fps = q.decode_fps ?? q.send_fps;
  if (fps) parts.push(`${Math.round(fps)} fps`);
  parts.push(`${Math.round(q.video_kbps + q.audio_kbps)} kbit/s`);
  if (q.rtt_ms !== null) parts.push(`rtt ${Math.round(q.rtt_ms)} ms`);
  parts.push(`loss ${(q.packet_loss_rate * 100).toFixed(1)} %`);
  if (q.delay_ms !== null && q.delay_ms !== undefined) parts.push(`buffer ${Math.round(q.delay_ms)} ms`);
  if (q.viewers !== undefined) parts.push(`${q.viewers} viewer${q.viewers === 1 ? "" : "s"}`);
  return `${parts.join(" · ")} · ${LEVEL_NAMES[q.level]}`;
}
