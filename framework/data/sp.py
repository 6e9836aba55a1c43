"""Sequence-parallel chunking: the ranks of one SP group share the same batch of sp·T-frame chunks and each
takes its own T consecutive frames of every lane (rank k of the group: frames [k·T, (k+1)·T))."""
from __future__ import annotations

from .loader import SequenceBatch


def sp_part(batch: SequenceBatch, sp_rank: int, sp: int) -> SequenceBatch:
    """Rank sp_rank's part. Only the first part may reset the state (the others continue the state relayed
    from the rank before); a video ends in the part that holds its last valid frame."""
    if sp == 1:
        return batch
    T = batch.frames.shape[1] // sp
    cols = slice(sp_rank * T, (sp_rank + 1) * T)
    last_valid = batch.valid.sum(1) - 1
    return SequenceBatch(
        frames=batch.frames[:, cols], labels=batch.labels[:, cols], valid=batch.valid[:, cols],
        starts=batch.starts & (sp_rank == 0), ends=batch.ends & (last_valid // T == sp_rank),
        video=batch.video, frame=batch.frame[:, cols])
