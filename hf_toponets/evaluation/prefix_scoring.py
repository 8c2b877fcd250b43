"""Summed next-token log-probabilities of many sequences, each distinct prefix's body and softmax computed once.

For a causal LM the distribution after a prefix ``x_{<=t}`` depends on the prefix alone, so
``log p(x_{t+1} | x_{<=t}) = z[x_{t+1}] - logsumexp(z)`` with ``z = head(h_t)`` needs the body's
state ``h_t`` and the output layer (``V`` logits) once per distinct prefix, however many sequences
share it. Minimal pairs share most prefixes: over BLiMP's 133,945 distinct sentences (GPT-2 BPE),
696,587 distinct prefixes cover 1,252,116 scored positions (1.8x fewer).

Body: when it outweighs the head, each distinct prefix runs once through :mod:`.prefix_cache`
(shared prefixes as cached keys and values), after a check on a few sequences that this model's
cache gives its plain forward's states; otherwise every (length-sorted, right-padded) sequence of ``batches`` runs whole and each
prefix's state is taken from the first batch that holds it. Head: ``head(body(x))`` when it equals
``model(x).logits`` (checked on the first forward), else the model's own logits, once per prefix,
in blocks of prefixes gathered across forwards (:class:`HeadBlocks`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from .prefix_cache import run_segments, segments

CHUNK = 128  # positions compared by the head check below
HEAD_ROWS = 512  # prefixes per output-layer block
VOCAB_BLOCK = 512  # vocabulary rows per step of a plain Linear head: (512, 512) float32 logits, 1 MB
KV_BYTES = 1 << 30  # keys and values kept at once (GPT-Neo-125M: 74 KB per prefix, 14,563 prefixes)


class PrefixTable:
    """A trie over the sequences: node = a distinct prefix; need = a distinct (prefix, next token).

    ``parent[node]`` (-1 for a root) and ``token[node]`` (the prefix's last token, the body's input
    there); ``needs[node]``: that prefix's ``(next token, need id)`` pairs; ``seq_nodes[i]`` /
    ``seq_needs[i]``: the node / need id of each scored position of sequence ``i``; ``owners[b]``:
    the ``(row, t, node)`` positions of batch ``b`` that are the first occurrence of their prefix.
    """

    def __init__(self, sequences: list[tuple[int, ...]], batches: list[list[int]]):
        children: dict[tuple[int, int], int] = {}
        need_ids: dict[tuple[int, int], int] = {}
        self.parent: list[int] = []
        self.token: list[int] = []
        self.needs: list[list[tuple[int, int]]] = []
        self.seq_nodes, self.seq_needs = [], []
        for x in sequences:
            node, nodes, needs = -1, [], []
            for t in range(len(x) - 1):
                parent, node = node, children.setdefault((node, x[t]), len(children))
                if node == len(self.needs):
                    self.needs.append([])
                    self.parent.append(parent)
                    self.token.append(x[t])
                key = (node, x[t + 1])
                if key not in need_ids:
                    need_ids[key] = len(need_ids)
                    self.needs[node].append((x[t + 1], need_ids[key]))
                nodes.append(node)
                needs.append(need_ids[key])
            self.seq_nodes.append(nodes)
            self.seq_needs.append(needs)
        self.n_needs = len(need_ids)
        seen: set[int] = set()
        self.owners = []
        for batch in batches:
            owned = []
            for row, i in enumerate(batch):
                for t, node in enumerate(self.seq_nodes[i]):
                    if node not in seen:
                        seen.add(node)
                        owned.append((row, t, node))
            self.owners.append(owned)


def _body_and_head(model: nn.Module):
    body, head = getattr(model, "base_model", None), model.get_output_embeddings()
    return (body, head) if body is not None and body is not model and head is not None else None


def _head_matches(model, head, hidden, ids, rows, ts) -> bool:
    """Whether ``head(body(x))`` gives ``model(x).logits`` on (up to CHUNK of) this batch's positions."""
    full = model(input_ids=ids).logits[rows[:CHUNK], ts[:CHUNK]].float()
    return torch.allclose(head(hidden[:CHUNK]).float(), full, rtol=1e-4, atol=1e-4)


class HeadBlocks:
    """The output layer over prefix states gathered from many forwards, in blocks of ``HEAD_ROWS``.

    ``add(states (N, H), nodes)`` buffers; each full block (and ``flush()``) sets ``logprob[need]`` for every
    need of its nodes: ``z[tok] - logsumexp(z)`` with ``z = head(h)`` in float32 (``head`` None: ``states``
    are already logits ``(N, V)``, scored at once). A plain ``nn.Linear`` head runs through
    :func:`_linear_log_softmax` (GPT-2's head on one CPU core: 0.95 ms per prefix, against 1.5 ms for
    ``log_softmax(head(h))`` on 128 rows).
    """

    def __init__(self, head: nn.Module | None, table: PrefixTable, logprob: torch.Tensor):
        self.head, self.table, self.logprob = head, table, logprob
        self.states: list[torch.Tensor] = []
        self.nodes: list[int] = []

    def add(self, states: torch.Tensor, nodes: list[int]) -> None:
        self.states.append(states)
        self.nodes.extend(nodes)
        if self.head is None or len(self.nodes) >= HEAD_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.nodes:
            return
        states, nodes = torch.cat(self.states), self.nodes
        self.states, self.nodes = [], []
        for start in range(0, len(nodes), HEAD_ROWS):
            self._block(states[start : start + HEAD_ROWS], nodes[start : start + HEAD_ROWS])

    def _block(self, block: torch.Tensor, nodes: list[int]) -> None:
        picks = [(k, tok, need) for k, node in enumerate(nodes) for tok, need in self.table.needs[node]]
        k, tok, need = zip(*picks)
        k, tok = torch.tensor(k, device=block.device), torch.tensor(tok, device=block.device)
        head = self.head
        if type(head) is nn.Linear and block.dtype == head.weight.dtype:
            picked = _linear_log_softmax(head.weight, head.bias, block, tok, k)
        else:
            logits = (head(block) if head is not None else block).float()  # (rows, V)
            picked = torch.log_softmax(logits, -1, out=logits)[k, tok]  # in place: fresh (rows, V) pages cost more
        self.logprob[list(need)] = picked.double().cpu()


def _linear_log_softmax(weight: torch.Tensor, bias: torch.Tensor | None, states: torch.Tensor, tok: torch.Tensor,
                        k: torch.Tensor) -> torch.Tensor:
    """``log_softmax(states @ weight^T + bias)[k, tok]`` in float32, over blocks of VOCAB_BLOCK vocabulary rows.

    Each block ``z = W_b @ states^T`` ``(VOCAB_BLOCK, rows)`` stays in cache while the running
    ``logsumexp`` takes it in (``m' = max(m, max z)``, ``s' = s e^{m - m'} + sum e^{z - m'}``) and the
    picked logits are read from it: one pass over the weight and no ``(V, rows)`` tensor.
    """
    rows = states.shape[0]
    top = torch.full((rows,), -torch.inf, device=states.device)
    total = torch.zeros(rows, device=states.device)
    picked = torch.empty(len(tok), device=states.device)
    for start in range(0, weight.shape[0], VOCAB_BLOCK):
        w = weight[start : start + VOCAB_BLOCK]
        z = (torch.mm(w, states.T) if bias is None else torch.addmm(bias[start : start + VOCAB_BLOCK, None], w, states.T)).float()
        inside = ((tok >= start) & (tok < start + len(w))).nonzero().squeeze(1)
        picked[inside] = z[tok[inside] - start, k[inside]]
        new_top = torch.maximum(top, z.amax(0))
        total = total * torch.exp(top - new_top) + (z - new_top).exp_().sum(0)
        top = new_top
    return picked - (total.log() + top)[k]


def score_sequences(model: nn.Module, sequences: list[tuple[int, ...]], batches: list[list[int]],
                    progress: bool = True, share_prefixes: bool = True) -> torch.Tensor:
    """``sum_{t>=1} log softmax(f(x_{<t}))[x_t]`` per sequence, float64 ``(N,)``.

    ``batches`` index ``sequences`` and partition them: the forwards of the unshared path; the shared
    path keeps only their size (at most ``max batch * longest sequence`` positions per forward).
    ``share_prefixes=False`` forces the unshared path.
    """
    if not sequences:
        return torch.zeros(0, dtype=torch.float64)
    table = PrefixTable(sequences, batches)
    logprob = torch.zeros(table.n_needs, dtype=torch.float64)
    split = _body_and_head(model)
    with torch.inference_mode(), tqdm(total=len(sequences), desc="BLiMP", unit="sent", disable=not progress) as bar:
        budget = max(map(len, batches)) * max(map(len, sequences))
        per_node = (_shared_kv_bytes(model, split, sequences, table, budget)
                    if share_prefixes and split is not None and _body_dominates(*split) else None)
        if per_node is None:
            _score_unshared(model, split, sequences, batches, table, logprob, bar)
        else:
            _score_shared(split, sequences, table, logprob, budget, bar, max(1, KV_BYTES // per_node))
    seq_index = torch.tensor([i for i, needs in enumerate(table.seq_needs) for _ in needs])
    flat = torch.tensor([n for needs in table.seq_needs for n in needs])
    return torch.zeros(len(sequences), dtype=torch.float64).index_add_(0, seq_index, logprob[flat])


def _score_shared(split, sequences, table: PrefixTable, logprob: torch.Tensor, budget: int, bar, limit: int) -> None:
    """Each distinct prefix through the body once, each through the head once: chunks of sequences in
    lexicographic order (a chunk holds whole subtrees) of at most ``limit`` distinct prefixes, whose
    keys and values are kept together (KV_BYTES)."""
    body, head = split
    device = next(body.parameters()).device
    scored = torch.zeros(len(table.parent), dtype=torch.bool)  # a chunk may recompute its first nodes' states
    blocks = HeadBlocks(head, table, logprob)

    def on_hidden(hidden, nodes):
        fresh = [k for k, n in enumerate(nodes) if not scored[n]]
        scored[[nodes[k] for k in fresh]] = True
        blocks.add(hidden[fresh], [nodes[k] for k in fresh])

    for chunk in _chunks(sorted(range(len(sequences)), key=sequences.__getitem__), table.seq_nodes, limit):
        run_segments(body, table.token, segments(table.parent, table.seq_nodes, chunk), budget, device, on_hidden)
        bar.update(len(chunk))
    blocks.flush()


def _chunks(order: list[int], seq_nodes: list[list[int]], limit: int) -> Iterator[list[int]]:
    """``order`` cut into runs whose sequences hold at most ``limit`` distinct prefixes (one sequence may exceed it)."""
    chunk: list[int] = []
    nodes: set[int] = set()
    for i in order:
        if chunk and len(nodes) + sum(n not in nodes for n in seq_nodes[i]) > limit:  # no set copy per sequence
            yield chunk
            chunk, nodes = [], set()
        chunk.append(i)
        nodes.update(seq_nodes[i])
    if chunk:
        yield chunk


def _body_dominates(body: nn.Module, head: nn.Module) -> bool:
    """Whether the body's per-token work (its parameters outside the input embeddings) is at least the
    output layer's. Only then does running it once per distinct prefix repay the shared path's smaller,
    more numerous forwards: a tiny model with a 50k vocabulary spends its time in the head, which both
    paths already run once per prefix (GPT-Neo-125M: 86M vs 39M; hidden 64 x 2 layers: 0.1M vs 3.2M)."""
    embedding = body.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in body.parameters()) - embedding >= sum(p.numel() for p in head.parameters())


def _shared_kv_bytes(model, split, sequences, table: PrefixTable, budget: int) -> int | None:
    """The bytes of keys and values per prefix when the shared body gives the plain forward's states,
    and ``head`` of them the model's logits (rtol = atol = 1e-4), on the first 8 sequences in
    lexicographic order (shared prefixes and branches); None when not, or when the shared body fails
    (a cache this code does not know)."""
    body, head = split
    sample = sorted(range(len(sequences)), key=sequences.__getitem__)[:8]
    ids = _right_padded([sequences[i] for i in sample]).to(next(body.parameters()).device)[:, :-1]
    states = {}
    try:
        store = run_segments(body, table.token, segments(table.parent, table.seq_nodes, sample), budget, ids.device,
                             lambda hidden, nodes: states.update(zip(nodes, hidden)))
    except Exception:  # noqa: BLE001 - any failure of the cached path only selects the plain one
        return None
    plain, logits = body(input_ids=ids).last_hidden_state, model(input_ids=ids).logits
    positions = [(row, t, n) for row, i in enumerate(sample) for t, n in enumerate(table.seq_nodes[i])]
    shared = torch.stack([states[n] for _, _, n in positions])
    rows, ts = (torch.tensor(c, device=ids.device) for c in list(zip(*positions))[:2])
    exact = (torch.allclose(shared, plain[rows, ts], rtol=1e-4, atol=1e-4)
             and torch.allclose(head(shared).float(), logits[rows, ts].float(), rtol=1e-4, atol=1e-4))
    return store.bytes_per_node() if exact else None


def _score_unshared(model, split, sequences, batches, table: PrefixTable, logprob: torch.Tensor, bar) -> None:
    device = next(model.parameters()).device
    blocks = HeadBlocks(split[1] if split is not None else None, table, logprob)
    for b, batch in enumerate(batches):
        owned = table.owners[b]
        bar.update(len(batch))
        if not owned:  # every prefix of this batch was scored in an earlier one
            continue
        ids = _right_padded([sequences[i] for i in batch]).to(device)[:, :-1]
        rows = torch.tensor([r for r, _, _ in owned], dtype=torch.long, device=device)
        ts = torch.tensor([t for _, t, _ in owned], dtype=torch.long, device=device)
        if split is not None:
            hidden = split[0](input_ids=ids).last_hidden_state[rows, ts]  # (N, H)
            if b == 0 and not _head_matches(model, split[1], hidden, ids, rows, ts):
                split = None  # the model does more than head(body(x)): use its own logits
                blocks = HeadBlocks(None, table, logprob)
        if split is None:
            hidden = model(input_ids=ids).logits[rows, ts]  # (N, V): already the logits
        blocks.add(hidden, [n for _, _, n in owned])
    blocks.flush()


def _right_padded(sequences: list[tuple[int, ...]]) -> torch.Tensor:
    """``(B, max_len)`` with each row right-padded by its own first token (no real position sees a pad)."""
    ids = torch.full((len(sequences), max(map(len, sequences))), sequences[0][0], dtype=torch.long)
    for row, x in enumerate(sequences):
        ids[row, : len(x)] = torch.tensor(x)
    return ids
