"""The error table: stable numbers in their areas, documented, SDK numbers kept."""

from __future__ import annotations

from pathlib import Path

from edged.errors import AREAS, ERRORS, ErrorCode, describe, markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"


def test_every_code_is_in_an_area_and_has_meaning_and_remedy() -> None:
    assert set(ERRORS) == set(ErrorCode)
    for code, info in ERRORS.items():
        assert int(code) // 1000 in AREAS, code
        assert info.meaning.endswith(".") and info.remedy.endswith("."), code
        assert len(info.meaning) > 10 and len(info.remedy) > 5, code


def test_the_original_sdk_numbers_are_kept() -> None:
    assert ErrorCode.AUTHENTICATION_FAILED == 1002033
    assert ErrorCode.ROOM_FULL == 1002034
    assert ErrorCode.KICKED_OUT == 1002050
    assert ErrorCode.RECONNECT_GAVE_UP == 1002053
    assert ErrorCode.TOKEN_EXPIRED_KICKED_OUT == 1002056
    assert ErrorCode.STREAM_ID_ALREADY_PUBLISHED == 1003028
    assert ErrorCode.STREAM_NOT_FOUND == 1004002
    assert ErrorCode.NOT_LOGGED_IN == 1000002


def test_docs_errors_md_matches_the_table() -> None:
    assert DOC.read_text() == markdown(), "regenerate: python -m edged.errors > docs/errors.md"


def test_unknown_numbers_describe_as_internal_error() -> None:
    assert describe(42).code == ErrorCode.INTERNAL_ERROR
    assert describe(1002050).code == ErrorCode.KICKED_OUT
