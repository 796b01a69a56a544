"""Quality reports from getStats() and the engine's counters: rates, loss, levels."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
from typing import Any

import ifaddr
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCRemoteOutboundRtpStreamStats,
    RTCStatsReport,
    RTCTransportStats,
)
from hypothesis import given
from hypothesis import strategies as st

from edged.engine.quality import (
    PlayCounters,
    PlayerQualityMeter,
    PublishCounters,
    PublisherQualityMeter,
    quality_level,
    quality_to_dict,
)
from edged.engine.stats import CounterDeltas, RateMeter, counter_delta, stat_value, stats_by_type
from edged.model import PlayQuality, PublishQuality, QualityLevel
from edged.testing.waiting import until

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
VIDEO_SSRC, AUDIO_SSRC, RTX_SSRC = 1111, 2222, 3333


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


# -- synthetic stats, shaped as aiortc's getStats() makes them ------------------------


def outbound(owner: int, kind: str, bytes_sent: int, packets: int, ssrc: int = 0) -> Any:
    return RTCOutboundRtpStreamStats(
        timestamp=T0,
        type="outbound-rtp",
        id=f"outbound-rtp_{owner}",
        ssrc=ssrc or (VIDEO_SSRC if kind == "video" else AUDIO_SSRC) + owner,
        kind=kind,
        transportId="transport_1",
        packetsSent=packets,
        bytesSent=bytes_sent,
        trackId="track",
    )


def remote_inbound(
    owner: int, kind: str, sent: int, lost: int, rtt: float | None, fraction: int = 0
) -> Any:
    return RTCRemoteInboundRtpStreamStats(
        timestamp=T0,
        type="remote-inbound-rtp",
        id=f"remote-inbound-rtp_{owner}",
        ssrc=9999,  # aiortc puts the reporting receiver's SSRC here
        kind=kind,
        transportId="transport_1",
        packetsReceived=sent - lost,
        packetsLost=lost,
        jitter=0,
        roundTripTime=rtt,  # type: ignore[arg-type]
        fractionLost=fraction,
    )


def inbound(owner: int, kind: str, received: int, lost: int, ssrc: int, jitter: int = 0) -> Any:
    return RTCInboundRtpStreamStats(
        timestamp=T0,
        type="inbound-rtp",
        id=f"inbound-rtp_{owner}",
        ssrc=ssrc,
        kind=kind,
        transportId="transport_1",
        packetsReceived=received,
        packetsLost=lost,
        jitter=jitter,
    )


def remote_outbound(owner: int, kind: str, bytes_sent: int, sent_at: float, ssrc: int) -> Any:
    return RTCRemoteOutboundRtpStreamStats(
        timestamp=at(sent_at + 0.01),
        type="remote-outbound-rtp",
        id=f"remote-outbound-rtp_{owner}",
        ssrc=ssrc,
        kind=kind,
        transportId="transport_1",
        packetsSent=bytes_sent // 1000,
        bytesSent=bytes_sent,
        remoteTimestamp=at(sent_at),
    )


def transport() -> Any:
    return RTCTransportStats(
        timestamp=T0,
        type="transport",
        id="transport_1",
        packetsSent=1,
        packetsReceived=1,
        bytesSent=1,
        bytesReceived=1,
        iceRole="controlling",
        dtlsState="connected",
    )


def report(*stats: Any) -> RTCStatsReport:
    out = RTCStatsReport()
    for stat in (*stats, transport()):
        out.add(stat)
    return out


def viewer(
    owner: int,
    video_bytes: int,
    audio_bytes: int = 0,
    sent: int = 0,
    lost: int = 0,
    rtt: float | None = None,
) -> RTCStatsReport:
    """One viewer link: video and audio outbound-rtp, and a receiver report on video."""
    stats = [outbound(owner, "video", video_bytes, video_bytes // 1000)]
    stats.append(outbound(owner + 1, "audio", audio_bytes, audio_bytes // 100))
    if sent:
        stats.append(remote_inbound(owner, "video", sent, lost, rtt))
    return report(*stats)


def pub_counters(frames: int) -> PublishCounters:
    return PublishCounters(
        frames_captured=frames,
        frames_encoded=frames,
        frames_sent=frames,
        width=640,
        height=480,
        codec="H264",
        hardware_encode=True,
        target_fps=30,
    )


def play_counters(frames: int, **kw: Any) -> PlayCounters:
    kw.setdefault("target_fps", 30)
    return PlayCounters(frames_received=frames, frames_decoded=frames, codec="H264", **kw)


# -- reading reports -------------------------------------------------------------------


def test_stats_by_type_groups_aiortc_objects_and_plain_mappings() -> None:
    grouped = stats_by_type(viewer(10, 1000, 100, sent=10))
    assert sorted(grouped) == ["outbound-rtp", "remote-inbound-rtp", "transport"]
    assert len(grouped["outbound-rtp"]) == 2
    plain = stats_by_type([{"type": "inbound-rtp", "packets_lost": 3}])
    assert stat_value(plain["inbound-rtp"][0], "packetsLost") == 3


# -- counters --------------------------------------------------------------------------


def test_counter_delta_treats_a_decrease_as_a_restart_or_a_wrap() -> None:
    assert counter_delta(100, 250) == 150
    assert counter_delta(500, 40) == 40
    assert counter_delta(2**32 - 10, 5, wrap=2**32) == 15


def test_rate_meter_gives_per_second_rates_after_the_first_sample() -> None:
    meter = RateMeter()
    assert meter.update(0, now=10.0) is None
    assert meter.update(90, now=13.0) == pytest.approx(30.0)
    assert meter.update(90, now=13.0) is None  # no time passed
    assert meter.update(30, now=16.0) == pytest.approx(10.0)  # restarted: 30 new frames


def test_counter_deltas_count_a_new_stream_from_zero_and_forget_gone_ones() -> None:
    deltas = CounterDeltas()
    assert deltas.delta("a", 100) == 100
    deltas.prune()
    assert deltas.delta("a", 160) == 60
    deltas.prune()
    deltas.prune()  # "a" not seen in that period: forgotten
    assert deltas.delta("a", 170) == 170


# -- levels ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "level"),
    [
        (0.0, QualityLevel.EXCELLENT),
        (0.0099, QualityLevel.EXCELLENT),
        (0.01, QualityLevel.GOOD),
        (0.03, QualityLevel.MEDIUM),
        (0.08, QualityLevel.BAD),
        (0.1999, QualityLevel.BAD),
        (0.20, QualityLevel.DIE),
        (1.0, QualityLevel.DIE),
    ],
)
def test_loss_thresholds_at_their_boundaries(loss: float, level: QualityLevel) -> None:
    assert quality_level(None, loss, 30, 30, receiving=True) == level


@pytest.mark.parametrize(
    ("rtt", "level"),
    [
        (None, QualityLevel.EXCELLENT),
        (99.9, QualityLevel.EXCELLENT),
        (100, QualityLevel.GOOD),
        (200, QualityLevel.MEDIUM),
        (400, QualityLevel.BAD),
        (799, QualityLevel.BAD),
        (800, QualityLevel.DIE),
    ],
)
def test_rtt_thresholds_at_their_boundaries(rtt: float | None, level: QualityLevel) -> None:
    assert quality_level(rtt, 0.0, 30, 30, receiving=True) == level


@pytest.mark.parametrize(
    ("fps", "level"),
    [
        (27, QualityLevel.EXCELLENT),
        (26.9, QualityLevel.GOOD),
        (22.5, QualityLevel.GOOD),
        (15, QualityLevel.MEDIUM),
        (14.9, QualityLevel.BAD),
        (0, QualityLevel.BAD),
    ],
)
def test_fps_thresholds_relative_to_the_target(fps: float, level: QualityLevel) -> None:
    assert quality_level(None, 0.0, fps, 30, receiving=True) == level


def test_level_is_the_worst_grade_and_ignores_fps_without_a_target() -> None:
    assert quality_level(150, 0.05, 30, 30, receiving=True) == QualityLevel.MEDIUM
    assert quality_level(450, 0.0, 30, 30, receiving=True) == QualityLevel.BAD
    assert quality_level(10, 0.0, 0, 0, receiving=True) == QualityLevel.EXCELLENT


def test_level_is_die_when_nothing_flowed() -> None:
    assert quality_level(10, 0.0, 30, 30, receiving=False) == QualityLevel.DIE


# -- publisher ---------------------------------------------------------------------------


def test_publisher_is_unknown_before_its_first_full_period() -> None:
    meter = PublisherQualityMeter()
    q = meter.update([viewer(10, 50_000, 5_000, sent=50, rtt=0.02)], pub_counters(30), now=0.0)
    assert q.level == QualityLevel.UNKNOWN
    assert (q.video_kbps, q.capture_fps) == (0.0, 0.0)
    assert q.total_bytes_sent == 55_000  # totals count from the start
    assert (q.codec, q.width, q.height, q.hardware_encode, q.viewers) == ("H264", 640, 480, True, 1)


def test_publisher_kbps_and_fps_come_from_deltas_over_the_period() -> None:
    meter = PublisherQualityMeter()
    meter.update([viewer(10, 100_000, 10_000)], pub_counters(300), now=0.0)
    q = meter.update([viewer(10, 475_000, 22_000)], pub_counters(390), now=3.0)
    assert q.video_kbps == pytest.approx(375_000 * 8 / 1000 / 3)  # 1000 kbps
    assert q.audio_kbps == pytest.approx(32.0)
    assert q.capture_fps == q.encode_fps == q.send_fps == pytest.approx(30.0)
    assert q.total_bytes_sent == 497_000
    assert q.level == QualityLevel.EXCELLENT


def test_publisher_loss_is_over_the_period_not_cumulative() -> None:
    meter = PublisherQualityMeter()
    # 100 of the first 1000 packets were lost, then 10 of the next 1000.
    meter.update([viewer(10, 1_000_000, sent=1000, lost=100, rtt=0.05)], pub_counters(0), now=0.0)
    q = meter.update(
        [viewer(10, 2_000_000, sent=2000, lost=110, rtt=0.05)], pub_counters(90), now=3.0
    )
    assert q.packet_loss_rate == pytest.approx(0.01)
    assert q.rtt_ms == pytest.approx(50.0)
    assert q.level == QualityLevel.GOOD


def test_publisher_loss_falls_back_to_fraction_lost_without_a_new_receiver_report() -> None:
    meter = PublisherQualityMeter()
    stale = report(
        outbound(10, "video", 1000, 10), remote_inbound(10, "video", 10, 1, 0.01, fraction=64)
    )
    meter.update([stale], pub_counters(0), now=0.0)
    stale_again = report(
        outbound(10, "video", 2000, 20), remote_inbound(10, "video", 10, 1, 0.01, fraction=64)
    )
    q = meter.update([stale_again], pub_counters(90), now=3.0)
    assert q.packet_loss_rate == pytest.approx(0.25)


def test_publisher_reports_totals_and_its_worst_viewers_rtt_and_loss() -> None:
    meter = PublisherQualityMeter()
    first = [
        viewer(10, 100_000, sent=1000, lost=0, rtt=0.010),
        viewer(20, 100_000, sent=1000, lost=0, rtt=0.300),
    ]
    meter.update(first, pub_counters(0), now=0.0)
    second = [
        viewer(10, 400_000, sent=2000, lost=50, rtt=0.010),  # 5 % lost, near
        viewer(20, 400_000, sent=2000, lost=0, rtt=0.300),  # no loss, far
    ]
    q = meter.update(second, pub_counters(90), now=3.0)
    assert q.viewers == 2
    assert q.total_bytes_sent == 800_000
    assert q.video_kbps == pytest.approx(600_000 * 8 / 1000 / 3)  # both links together
    assert q.packet_loss_rate == pytest.approx(0.05)
    assert q.rtt_ms == pytest.approx(300.0)
    assert q.level == QualityLevel.MEDIUM


def test_publisher_keeps_the_bytes_of_viewers_that_left_and_counts_new_ones() -> None:
    meter = PublisherQualityMeter()
    meter.update([viewer(10, 100_000), viewer(20, 200_000)], pub_counters(0), now=0.0)
    q = meter.update([viewer(20, 260_000), viewer(30, 40_000)], pub_counters(90), now=3.0)
    assert q.total_bytes_sent == 400_000
    assert q.video_kbps == pytest.approx(100_000 * 8 / 1000 / 3)
    assert q.viewers == 2


def test_publisher_survives_counter_resets() -> None:
    meter = PublisherQualityMeter()
    meter.update([viewer(10, 900_000)], pub_counters(900), now=0.0)
    # The same sender's counters and the engine's frame counters restarted from zero.
    q = meter.update([viewer(10, 30_000)], pub_counters(60), now=3.0)
    assert q.video_kbps == pytest.approx(80.0)
    assert q.capture_fps == pytest.approx(20.0)
    assert q.total_bytes_sent == 930_000
    assert q.level == QualityLevel.MEDIUM  # 20 of 30 fps


def test_publisher_is_die_when_nothing_was_sent_and_unknown_without_viewers() -> None:
    meter = PublisherQualityMeter()
    meter.update([viewer(10, 100_000)], pub_counters(0), now=0.0)
    q = meter.update([viewer(10, 100_000)], pub_counters(90), now=3.0)
    assert q.video_kbps == 0.0
    assert q.level == QualityLevel.DIE
    q = meter.update([], pub_counters(180), now=6.0)
    assert (q.viewers, q.level, q.total_bytes_sent) == (0, QualityLevel.UNKNOWN, 100_000)


COUNTS = st.integers(min_value=0, max_value=2**40)


@given(
    st.lists(
        st.tuples(COUNTS, COUNTS, COUNTS, COUNTS, st.booleans(), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    )
)
def test_publisher_output_stays_in_range_whatever_the_counters_do(
    samples: list[tuple[int, int, int, int, bool, int]],
) -> None:
    meter = PublisherQualityMeter()
    total = 0
    for i, (video, audio, sent, lost, rtt_known, fraction) in enumerate(samples):
        stats = [outbound(10, "video", video, video // 1000), outbound(11, "audio", audio, 1)]
        rtt = 0.05 if rtt_known else None
        stats.append(remote_inbound(10, "video", sent, lost, rtt, fraction=fraction))
        q = meter.update([report(*stats)], pub_counters(i * 7 % 5), now=float(i))
        assert 0.0 <= q.packet_loss_rate <= 1.0
        assert q.video_kbps >= 0 and q.audio_kbps >= 0 and q.send_fps >= 0
        assert q.total_bytes_sent >= total
        total = q.total_bytes_sent
        assert q.level in QualityLevel


# -- player ------------------------------------------------------------------------------


def player_report(
    received: int, lost: int, video_bytes: int, sent_at: float, rtx: int = 0, jitter: int = 0
) -> RTCStatsReport:
    """A player's report: video and audio inbound-rtp and the publisher's sender reports."""
    stats = [
        inbound(7, "video", received, lost, VIDEO_SSRC, jitter=jitter),
        inbound(8, "audio", received // 10, 0, AUDIO_SSRC, jitter=480),
        remote_outbound(7, "video", video_bytes, sent_at, VIDEO_SSRC),
        remote_outbound(8, "audio", video_bytes // 10, sent_at, AUDIO_SSRC),
    ]
    if rtx:  # aiortc then shows the RTX stream under the video receiver's id
        stats[0] = inbound(7, "video", rtx, 5, RTX_SSRC)
    return report(*stats)


def test_player_is_unknown_before_its_first_full_period() -> None:
    meter = PlayerQualityMeter()
    q = meter.update(player_report(100, 0, 100_000, 0.0), play_counters(10), now=0.0)
    assert q.level == QualityLevel.UNKNOWN
    assert q.rtt_ms is None
    assert q.total_bytes_received == 110_000


def test_player_kbps_from_sender_reports_and_loss_from_packet_deltas() -> None:
    meter = PlayerQualityMeter()
    meter.update(player_report(1000, 50, 100_000, 0.5, jitter=900), play_counters(30), now=0.0)
    q = meter.update(
        player_report(1980, 70, 400_000, 2.5, jitter=900),
        play_counters(120, delay_ms=45.0),
        now=3.0,
    )
    # 300 kB between two sender reports 2 s apart (not the 3 s period)
    assert q.video_kbps == pytest.approx(1200.0)
    assert q.audio_kbps == pytest.approx(120.0)
    # video: 20 lost of 1000 expected; audio: 0 of 98
    assert q.packet_loss_rate == pytest.approx(20 / 1098)
    assert q.recv_fps == q.decode_fps == pytest.approx(30.0)
    assert q.delay_ms == 45.0
    assert q.total_bytes_received == 440_000
    assert q.extra == {"video_jitter_ms": pytest.approx(10.0), "audio_jitter_ms": 10.0}
    assert q.level == QualityLevel.GOOD


def test_player_prefers_its_own_byte_counts_when_given() -> None:
    meter = PlayerQualityMeter()
    meter.update(player_report(10, 0, 5_000, 0.0), play_counters(0, video_bytes=0), now=0.0)
    q = meter.update(
        player_report(900, 0, 999_999, 1.0), play_counters(90, video_bytes=300_000), now=3.0
    )
    assert q.video_kbps == pytest.approx(800.0)
    assert q.total_bytes_received == 300_000 + 99_999  # audio still from sender reports


def test_player_ignores_the_rtx_stream_aiortc_shows_in_place_of_the_video_one() -> None:
    meter = PlayerQualityMeter()
    meter.update(player_report(1000, 0, 100_000, 0.0), play_counters(0), now=0.0)
    q = meter.update(player_report(2000, 0, 400_000, 2.0, rtx=40), play_counters(90), now=3.0)
    assert q.packet_loss_rate == 0.0  # audio alone: the RTX counts are not the video's
    assert q.level == QualityLevel.EXCELLENT


def test_player_survives_a_new_peer_connection() -> None:
    meter = PlayerQualityMeter()
    meter.update(player_report(5000, 0, 800_000, 10.0), play_counters(600), now=0.0)
    fresh = report(
        inbound(70, "video", 450, 0, 4444),
        remote_outbound(70, "video", 90_000, 1.0, 4444),
    )
    q = meter.update(fresh, play_counters(45), now=3.0)
    assert q.packet_loss_rate == 0.0
    assert q.recv_fps == pytest.approx(15.0)
    assert q.total_bytes_received == 880_000 + 90_000
    assert q.level == QualityLevel.MEDIUM


def test_player_is_die_when_nothing_arrives() -> None:
    meter = PlayerQualityMeter()
    meter.update(player_report(100, 0, 10_000, 0.0), play_counters(10), now=0.0)
    q = meter.update(player_report(100, 0, 10_000, 0.0), play_counters(10), now=3.0)
    assert (q.video_kbps, q.recv_fps, q.level) == (0.0, 0.0, QualityLevel.DIE)


def test_player_rtt_comes_from_its_own_senders_receiver_reports() -> None:
    meter = PlayerQualityMeter()
    talk_back = [outbound(30, "audio", 1000, 10), remote_inbound(30, "audio", 10, 0, 0.042)]
    meter.update(report(*talk_back), play_counters(0, target_fps=0), now=0.0)
    q = meter.update(report(*talk_back), play_counters(0, target_fps=0), now=3.0)
    assert q.rtt_ms == pytest.approx(42.0)


# -- JSON --------------------------------------------------------------------------------


def test_quality_to_dict_is_json_with_null_rtt_and_the_level_number() -> None:
    q = PublishQuality(video_kbps=1234.56789, level=QualityLevel.GOOD, codec="H264")
    d = quality_to_dict(q)
    assert d["rtt_ms"] is None
    assert (d["level"], d["level_name"], d["video_kbps"]) == (1, "good", 1234.568)
    assert json.loads(json.dumps(d)) == d
    p = quality_to_dict(PlayQuality(delay_ms=None, extra={"video_jitter_ms": 1.23456}))
    assert (p["delay_ms"], p["extra"], p["level"]) == (None, {"video_jitter_ms": 1.235}, 5)


# -- two real peer connections -------------------------------------------------------


def only_private_addresses() -> bool:
    """Every address here is loopback, link-local or in 198.18.0.0/15 (a test namespace)."""
    allowed = ipaddress.ip_network("198.18.0.0/15")
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address = ipaddress.ip_address(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
            if not (address.is_loopback or address.is_link_local or address in allowed):
                return False
    return True


class CountingTrack(MediaStreamTrack):
    """Passes a source's frames on and counts them."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.frames = 0

    async def recv(self) -> Any:
        frame = await self.source.recv()
        self.frames += 1
        return frame


async def read_all(track: MediaStreamTrack, counts: dict[str, int]) -> None:
    try:
        while True:
            await track.recv()
            counts[track.kind] = counts.get(track.kind, 0) + 1
    except MediaStreamError:
        pass


@pytest.mark.netns
async def test_meters_read_real_aiortc_reports_on_a_clean_link() -> None:
    if not only_private_addresses():
        pytest.fail("peer connections run only inside a private network namespace", False)
    from aiortc.mediastreams import VideoStreamTrack

    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = CountingTrack(VideoStreamTrack())
    sender.addTrack(video)
    sender.addTrack(AudioStreamTrack())
    received: dict[str, int] = {}
    readers: list[asyncio.Task[None]] = []
    receiver.on(
        "track", lambda track: readers.append(asyncio.ensure_future(read_all(track, received)))
    )
    try:
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        await until(lambda: received.get("video"), 5, "video to arrive")

        publisher, player = PublisherQualityMeter(), PlayerQualityMeter()
        pubs: list[PublishQuality] = []
        plays: list[PlayQuality] = []
        for _ in range(3):
            frames = video.frames
            pubs.append(publisher.update([await sender.getStats()], pub_counters(frames)))
            plays.append(
                player.update(
                    await receiver.getStats(),
                    play_counters(received.get("video", 0), width=640, height=480),
                )
            )
            await asyncio.sleep(2.0)  # rates are measured over 2 s of the call
    finally:
        await sender.close()
        await receiver.close()
        for task in readers:
            task.cancel()

    assert pubs[0].level == plays[0].level == QualityLevel.UNKNOWN
    pub, play = pubs[-1], plays[-1]
    assert pub.total_bytes_sent > pubs[1].total_bytes_sent > pubs[0].total_bytes_sent > 0
    assert pub.video_kbps > 0 and pub.audio_kbps > 0
    assert pub.send_fps > 20 and pub.viewers == 1
    assert pub.packet_loss_rate == 0.0
    assert pub.rtt_ms is None or pub.rtt_ms < 100
    assert pub.level in (QualityLevel.EXCELLENT, QualityLevel.GOOD)
    assert play.total_bytes_received > plays[1].total_bytes_received > 0
    assert play.video_kbps > 0 and play.audio_kbps > 0
    assert play.decode_fps > 20
    assert play.packet_loss_rate == 0.0
    assert play.level in (QualityLevel.EXCELLENT, QualityLevel.GOOD)
    json.dumps([quality_to_dict(q) for q in (pub, play)])
