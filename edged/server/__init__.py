"""The edged room server: signaling for rooms, users, streams and media links."""
