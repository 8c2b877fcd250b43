"""Summed next-token log-probabilities of many sequences, each distinct prefix's softmax computed once.

For a causal LM the distribution after a prefix ``x_{<=t}`` depends on the prefix alone, so
``log p(x_{t+1} | x_{<=t}) = z[x_{t+1}] - logsumexp(z)`` with ``z = head(h_t)`` needs the output
layer (``V`` logits, the dominant cost of small models with large vocabularies) once per distinct
prefix, however many sequences share it. Minimal pairs share most prefixes: over BLiMP's 134,000
sentences (GPT-2 BPE), 696,587 distinct prefixes cover 1,252,441 scored positions (1.8x fewer).

The body still runs on every (length-sorted, right-padded) sequence; then each prefix's hidden state
is taken from the first batch that holds it. Used when ``model(x).logits == head(body(x))`` holds
for the model (checked on the first batch); otherwise the full logits are used, still once per prefix.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

CHUNK = 128  # prefixes per output-layer block: (128, V) float32 logits, ~25 MB for GPT-2's 50,257 tokens


class PrefixTable:
    """A trie over the sequences: node = a distinct prefix; need = a distinct (prefix, next token).

    ``owners[b]``: the ``(row, t, node)`` positions of batch ``b`` that are the first occurrence of
    their prefix; ``needs[node]``: that prefix's ``(next token, need id)`` pairs; ``seq_needs[i]``:
    the need id of each scored position of sequence ``i``.
    """

    def __init__(self, sequences: list[tuple[int, ...]], batches: list[list[int]]):
        children: dict[tuple[int, int], int] = {}
        need_ids: dict[tuple[int, int], int] = {}
        self.needs: list[list[tuple[int, int]]] = []
        self.seq_nodes, self.seq_needs = [], []
        for x in sequences:
            node, nodes, needs = -1, [], []
            for t in range(len(x) - 1):
                node = children.setdefault((node, x[t]), len(children))
                if node == len(self.needs):
                    self.needs.append([])
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


def score_sequences(model: nn.Module, sequences: list[tuple[int, ...]], batches: list[list[int]],
                    progress: bool = True) -> torch.Tensor:
    """``sum_{t>=1} log softmax(f(x_{<t}))[x_t]`` per sequence, float64 ``(N,)``; ``batches`` index ``sequences``."""
    table = PrefixTable(sequences, batches)
    device = next(model.parameters()).device
    logprob = torch.zeros(table.n_needs, dtype=torch.float64)
    split = _body_and_head(model)
    with torch.inference_mode(), tqdm(total=len(sequences), desc="BLiMP", unit="sent", disable=not progress) as bar:
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
            if split is None:
                hidden = model(input_ids=ids).logits[rows, ts]  # (N, V): already the logits
            for start in range(0, len(owned), CHUNK):  # (CHUNK, V) blocks stay in cache
                block = hidden[start : start + CHUNK]
                logits = (split[1](block) if split is not None else block).float()
                logits = torch.log_softmax(logits, -1, out=logits)  # in place: fresh (CHUNK, V) pages cost more
                picks = [(k, tok, need) for k, (_, _, node) in enumerate(owned[start : start + CHUNK]) for tok, need in table.needs[node]]
                k, tok, need = (list(c) for c in zip(*picks))
                logprob[need] = logits[torch.tensor(k, device=device), torch.tensor(tok, device=device)].double().cpu()
    seq_index = torch.tensor([i for i, needs in enumerate(table.seq_needs) for _ in needs])
    flat = torch.tensor([n for needs in table.seq_needs for n in needs])
    return torch.zeros(len(sequences), dtype=torch.float64).index_add_(0, seq_index, logprob[flat])


def _right_padded(sequences: list[tuple[int, ...]]) -> torch.Tensor:
    """``(B, max_len)`` with each row right-padded by its own first token (no real position sees a pad)."""
    ids = torch.full((len(sequences), max(map(len, sequences))), sequences[0][0], dtype=torch.long)
    for row, x in enumerate(sequences):
        ids[row, : len(x)] = torch.tensor(x)
    return ids
