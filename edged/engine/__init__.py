"""The engine: the SDK half of edged (rooms, publishing, playing, events)."""
