"""Sending: one encoded stream to every viewer, encoded and packed once.

* :mod:`.fanout`: the fan-out of a published stream (one reader, one encoder).
* :mod:`.viewer`: one viewer's bounded queue, or its direct sender once established.
* :mod:`.keyframes`: the viewers' keyframe requests, rate-limited together.
* :mod:`.rtp_frames`: each access unit packed into RTP payloads once for all viewers.
* :mod:`.udp_batch`: an access unit's datagrams to one viewer in as few system calls as
  UDP segmentation offload allows.
"""
