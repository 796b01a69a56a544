"""Board detection from device-tree fixtures of each board, the defaults table, an
explicit key winning over it, H.264 level 3.1, and what `edged devices` prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.config.model import Config
from edged.engine.config import EngineProfile
from edged.media.board import (
    BOARDS,
    OTHER,
    Board,
    board_defaults,
    board_json,
    board_text,
    detect_board,
    fits_level_31,
    read_model,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "device-tree"


def board(name: str, *, hardware: bool = True, cores: int = 4) -> Board:
    return detect_board(FIXTURES / name, hardware_encoder=lambda: hardware, cores=cores)


@pytest.mark.parametrize(
    ("fixture", "key", "picture", "encoder", "viewers"),
    [
        ("zero2w", "zero2w", (1280, 720, 30, 1_500_000), "h264_v4l2m2m", 2),
        ("pi3b", "pi3", (1280, 720, 30, 2_000_000), "h264_v4l2m2m", 3),
        ("pi3bplus", "pi3", (1280, 720, 30, 2_000_000), "h264_v4l2m2m", 3),
        ("pi4b", "pi4", (1280, 720, 30, 2_500_000), "h264_v4l2m2m", 4),
        ("pi400", "pi4", (1280, 720, 30, 2_500_000), "h264_v4l2m2m", 4),
        ("cm4", "pi4", (1280, 720, 30, 2_500_000), "h264_v4l2m2m", 4),
        ("pi5", "pi5", (1280, 720, 30, 2_000_000), "libx264", 4),
        ("cm5", "pi5", (1280, 720, 30, 2_000_000), "libx264", 4),
        ("rockpro64", "other", (1280, 720, 30, 2_500_000), "h264_v4l2m2m", 4),
    ],
)
def test_each_board_gets_its_row(
    fixture: str, key: str, picture: tuple[int, int, int, int], encoder: str, viewers: int
) -> None:
    found = board(fixture)
    defaults = board_defaults(found)
    p = defaults.picture
    assert found.profile.key == key
    assert (p.width, p.height, p.fps, p.bitrate) == picture
    assert (defaults.encoder, defaults.p2p_max_viewers) == (encoder, viewers)
    assert found.model in defaults.reasons[0]


def test_a_board_without_a_working_encoder_gets_the_software_row() -> None:
    defaults = board_defaults(board("zero2w", hardware=False))
    assert defaults.encoder == "libx264"
    assert (defaults.picture.width, defaults.picture.height, defaults.picture.fps) == (640, 360, 15)
    assert defaults.p2p_max_viewers == 1
    assert any("no working hardware encoder" in r for r in defaults.reasons)


def test_the_pi_5_is_never_asked_for_a_hardware_encoder() -> None:
    asked: list[bool] = []

    def probe() -> bool:
        asked.append(True)
        return True

    found = detect_board(FIXTURES / "pi5", hardware_encoder=probe)
    assert not found.hardware_encoder and asked == []


def test_a_machine_without_device_tree_is_another_debian_machine(tmp_path: Path) -> None:
    assert read_model(tmp_path) == ""
    small = board_defaults(detect_board(tmp_path, hardware_encoder=lambda: False, cores=2))
    assert small.board.profile is OTHER
    assert (small.picture.width, small.picture.height) == (640, 480)
    big = board_defaults(detect_board(tmp_path, hardware_encoder=lambda: False, cores=8))
    assert (big.picture.width, big.picture.height) == (1280, 720)


def test_every_default_stays_within_h264_level_31() -> None:
    for profile in (*BOARDS, OTHER):
        for picture in (profile.hardware, profile.software):
            if picture is not None:
                assert fits_level_31(picture.width, picture.height, picture.fps), profile.key
    assert fits_level_31(1280, 720, 30) and not fits_level_31(1920, 1080, 30)
    assert not fits_level_31(1280, 720, 60)


def test_the_board_caps_the_scenario_and_an_explicit_key_wins() -> None:
    zero = board_defaults(board("zero2w", hardware=False)).picture
    broadcast = Config.model_validate({"room": {"scenario": "broadcast"}})
    capped = broadcast.video_config(zero)
    assert (capped.width, capped.height, capped.fps, capped.bitrate) == (640, 360, 15, 400_000)
    explicit = Config.model_validate(
        {"room": {"scenario": "broadcast"}, "video": {"width": 1280, "height": 720, "fps": 25}}
    )
    chosen = explicit.video_config(zero)
    assert (chosen.width, chosen.height, chosen.fps, chosen.bitrate) == (1280, 720, 25, 400_000)
    pi4 = board_defaults(board("pi4b")).picture
    call = Config().video_config(pi4)  # within the board: the scenario's own
    assert (call.width, call.height, call.fps, call.bitrate) == (640, 480, 30, 800_000)


def test_the_daemon_takes_the_boards_viewer_cap_unless_configured() -> None:
    from edged.daemon.desired import DesiredState
    from edged.daemon.sources import apply_sources

    defaults = board_defaults(board("zero2w"))
    for document, expected in (({}, 2), ({"auto": {"publish": {"p2p_max_viewers": 6}}}, 6)):
        config = Config.model_validate(
            {**document, "video": {"source": "testpattern"}, "audio": {"source": "none"}}
        )
        profile = EngineProfile(app_id="a", server_url="ws://127.0.0.1:1/ws")
        media = apply_sources(profile, config, board=defaults)
        assert DesiredState(config, media).publish_config.p2p_max_viewers == expected
        assert profile.video.width == 640  # the call scenario fits a Zero 2 W's 720p


def test_edged_devices_prints_the_board_and_why() -> None:
    text = board_text(board_defaults(board("pi4b")))
    assert text.splitlines()[0] == "BOARD"
    assert "Raspberry Pi 4 Model B Rev 1.4" in text and "h264" in text
    data = board_json(board_defaults(board("pi5")))
    assert (data["board"], data["encoder"], data["hardware_encoder"]) == ("pi5", "libx264", False)


def test_check_config_warns_about_a_picture_beyond_level_31() -> None:
    beyond = Config.model_validate({"video": {"width": 1920, "height": 1080}})
    assert any("level 3.1" in w for w in beyond.warnings())
    assert not any("level 3.1" in w for w in Config().warnings())
