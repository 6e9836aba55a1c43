"""Decode only what sampling needs: an H.264 frame that no target time shows and that no other frame
references is not decoded at all.

Sampling at 1 fps from 25 fps keeps 4% of the frames, but every reference frame must still be decoded for
the others. A non-reference frame (half the frames of x264's default B-frames) can be dropped unread, as
FFmpeg's `skip_frame=NONREF` does; here it is set packet by packet, only for frames no target needs: the
frame shown at a target time T is the last with presentation time <= T, so a frame is needed when some
target falls between its time and the next frame's. The next frame's time is read from the packets around
it (decoding order differs from presentation order); a window that misses the true next frame only finds a
later one, which can make a frame needed, never the reverse. Every frame sampling keeps is decoded exactly as
before (non-reference frames are, by definition, not used to decode others), so the frames sampled are the
same (tested against decoding everything).

Only for H.264, whose non-reference frames are never referenced (HEVC's sub-layer non-reference pictures can
be, by higher layers), and only once a first frame has come out after the start or a seek, so that the
decoding of the first frame, and the keyframe check after a seek, see every frame. Assumed, as for any
decoder: a packet's pts is its frame's pts. Not covered: a packet that fails to decode (a corrupt file), whose
time would still bound the frame before it.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

WINDOW = 32  # packets on each side: more than H.264 reorders (at most 16 frames)


@dataclass
class Targets:
    """Target times start + k / fps in [start, end), in seconds from the first frame (its pts: origin)."""
    start: Fraction
    fps: Fraction
    end: Fraction | None
    time_base: Fraction
    origin: int | None = None

    def needed(self, pts: int | None, successor: int | None) -> bool:
        """Some target falls in [pts, successor): the frame at pts would be sampled (unknowns: needed)."""
        if pts is None or successor is None or self.origin is None:
            return True
        begin, stop = (pts - self.origin) * self.time_base, (successor - self.origin) * self.time_base
        k = max(0, math.ceil((begin - self.start) * self.fps))  # the first target at or after begin
        target = self.start + k / self.fps
        return target < stop and (self.end is None or target < self.end)


def decode(container, stream, targets: Targets | None):
    """Frames of the stream from the container's position, as container.decode(stream) gives them, less
    frames no target needs that no other frame references (targets None, or not H.264: every frame)."""
    codec = stream.codec_context
    if targets is None or codec.name != "h264":
        yield from container.decode(stream)
        return
    behind, ahead, armed = deque(maxlen=WINDOW), deque(), False
    packets = iter(container.demux(stream))
    while True:
        while len(ahead) <= WINDOW and (packet := next(packets, None)) is not None:
            ahead.append(packet)
        if not ahead:
            return
        packet = ahead.popleft()
        skip = armed and packet.pts is not None and not targets.needed(packet.pts, _successor(packet.pts, behind, ahead))
        codec.skip_frame = "NONREF" if skip else "DEFAULT"
        behind.append(packet.pts)
        for frame in packet.decode():
            if targets.origin is None:
                targets.origin = frame.pts
            armed = True
            yield frame


def _successor(pts: int, behind: deque, ahead: deque) -> int | None:
    later = [p for p in behind if p is not None and p > pts]
    later += [p.pts for p in ahead if p.pts is not None and p.pts > pts]
    return min(later, default=None)
