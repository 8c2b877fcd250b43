"""Scoring on every rank of a process group: FSDP2 parameters gathered, batches shared out, scores summed back.

Evaluation forwards of an FSDP2 model normally all-gather each module's parameters inside its own
forward (a collective), so every rank would have to run exactly the same forwards, and a body or
head called directly (bypassing the root module's hooks) meets sharded ``DTensor`` parameters.
:func:`unsharded` instead gathers every FSDP module's parameters once, for the duration, and keeps
them gathered after each forward (like FSDP1's ``summon_full_params``): forwards then run no
collective, so ranks may score different numbers of batches, through any submodule. The cost is
one full copy of the parameters per rank while scoring (125M parameters: 0.5 GB in float32).

:func:`score_across_ranks`: rank ``r`` of ``W`` scores the batches ``r, r + W, ...`` (longest first, so
the work is balanced), and one ``all_reduce`` sums the per-sequence scores, each held by exactly one rank
(batches partition the sequences). Every rank returns all scores. Pure torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn


@contextmanager
def unsharded(model: nn.Module) -> Iterator[None]:
    """FSDP2 (``fully_shard``) modules of ``model`` with full parameters, not resharded after forward, until exit.

    A no-op outside a process group or for a model without FSDP2 modules. Collective: call on every rank.
    """
    if not (dist.is_available() and dist.is_initialized()):  # FSDP2 needs a process group
        yield
        return
    from torch.distributed.fsdp import FSDPModule

    modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
    # FSDP2 keeps "reshard after forward" as each parameter group's post-forward mesh (None: keep unsharded);
    # it is set to None here and restored on exit (set_reshard_after_forward cannot restore the root's special False)
    groups = [g for m in modules for g in m._get_fsdp_state()._fsdp_param_groups]
    saved = [g.post_forward_mesh_info for g in groups]
    for module in modules:  # the same order on every rank
        module.unshard()
    for group in groups:
        group.post_forward_mesh_info = None
    try:
        yield
    finally:
        for group, info in zip(groups, saved):
            group.post_forward_mesh_info = info
        for module in modules:
            module.reshard()


def score_across_ranks(score: Callable[[list, list[list[int]]], torch.Tensor], sequences: list,
                       batches: list[list[int]], device: torch.device) -> torch.Tensor:
    """``score(sequences, batches) -> (N,) float64`` run on this rank's share of ``batches``; all ranks' results.

    ``batches`` index ``sequences`` and partition them. Collective (one ``all_reduce`` on ``device``):
    call on every rank of the default process group, with the same arguments.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = batches[rank::world]
    local = sorted({i for batch in mine for i in batch})
    position = {i: k for k, i in enumerate(local)}
    scores = torch.zeros(len(sequences), dtype=torch.float64, device=device)
    if local:
        part = score([sequences[i] for i in local], [[position[i] for i in batch] for batch in mine])
        scores[torch.tensor(local, device=device)] = part.to(device)
    dist.all_reduce(scores)  # a sum: each sequence is scored on one rank and is 0 on the others
    return scores.cpu()
