import pytest
import torch

from conftest import tiny_gpt2, tiny_gpt_neo
from hf_toponets.evaluation.prefix_scoring import PrefixTable, score_sequences

SEQS = [(9, 1, 2, 3), (9, 1, 2, 4), (9, 1, 5), (9, 6), (9, 1, 2, 3, 7), (8, 1, 2)]


def naive_scores(model, sequences):
    """One sequence at a time, full log-softmax: the oracle."""
    out = []
    with torch.no_grad():
        for x in sequences:
            ids = torch.tensor([x])
            logp = torch.log_softmax(model(input_ids=ids[:, :-1]).logits.float(), -1)
            out.append(float(logp[0].gather(-1, ids[0, 1:, None]).sum()))
    return out


def test_table_counts_distinct_prefixes_and_next_tokens():
    table = PrefixTable(SEQS, [[0, 1, 2], [3, 4, 5]])
    prefixes = {x[: t + 1] for x in SEQS for t in range(len(x) - 1)}
    pairs = {(x[: t + 1], x[t + 1]) for x in SEQS for t in range(len(x) - 1)}
    assert len(table.needs) == len(prefixes) and table.n_needs == len(pairs)
    owned = [node for batch in table.owners for _, _, node in batch]
    assert sorted(owned) == list(range(len(prefixes)))  # each prefix owned exactly once
    assert [len(n) for n in table.seq_needs] == [len(x) - 1 for x in SEQS]


@pytest.mark.parametrize("batches", [[[0, 1, 2, 3, 4, 5]], [[4], [0, 1], [2, 3, 5]], [[i] for i in range(6)]])
def test_scores_equal_one_sequence_at_a_time(batches):
    model = tiny_gpt_neo(vocab=16).eval()
    got = score_sequences(model, SEQS, batches, progress=False)
    assert got.tolist() == pytest.approx(naive_scores(model, SEQS), abs=1e-4)


def test_models_whose_logits_are_not_head_of_body_fall_back():
    model = tiny_gpt_neo(vocab=16).eval()
    decoy = torch.nn.Linear(32, 16, bias=False)  # not what forward uses: the first-batch check must notice
    model.get_output_embeddings = lambda: decoy
    got = score_sequences(model, SEQS, [[0, 1, 2], [3, 4, 5]], progress=False)
    assert got.tolist() == pytest.approx(naive_scores(model, SEQS), abs=1e-4)


@pytest.mark.parametrize("bias", [False, True])
def test_blocked_linear_log_softmax_equals_log_softmax(bias, monkeypatch):
    from hf_toponets.evaluation import prefix_scoring

    monkeypatch.setattr(prefix_scoring, "VOCAB_BLOCK", 7)  # 53 = 7 x 7 + 4: a running logsumexp over 8 blocks
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(12, 53, bias=bias)
    with torch.no_grad():
        head.weight.mul_(20)  # logits spread over ~+-20: a block's max matters
        states = torch.randn(9, 12, generator=g)
        k = torch.tensor([0, 0, 3, 5, 8, 8, 8, 2])
        tok = torch.tensor([0, 52, 7, 6, 13, 49, 0, 20])  # first and last vocabulary rows, block edges
        got = prefix_scoring._linear_log_softmax(head.weight, head.bias, states, tok, k)
        want = torch.log_softmax(head(states).double(), -1)[k, tok]
    assert torch.allclose(got.double(), want, rtol=0, atol=1e-5)


def test_head_blocks_across_forwards_equal_one_sequence_at_a_time(monkeypatch):
    from hf_toponets.evaluation import prefix_scoring

    monkeypatch.setattr(prefix_scoring, "HEAD_ROWS", 5)  # blocks that span forwards, and forwards split into blocks
    monkeypatch.setattr(prefix_scoring, "VOCAB_BLOCK", 5)
    model = tiny_gpt_neo(vocab=16).eval()
    got = score_sequences(model, SEQS, [[0, 1], [2, 3], [4, 5]], progress=False)
    assert got.tolist() == pytest.approx(naive_scores(model, SEQS), abs=1e-4)


# Body prefix sharing (evaluation.prefix_cache): each distinct prefix through the body once, shared
# prefixes as cached keys and values. Oracle: the same scores without sharing, and one sequence at a time.
def random_pairs(seed, n_pairs=20, vocab=16, max_len=14):
    """Minimal-pair-like sequences: a common start token, a shared stem per pair, two endings, some repeats."""
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(n_pairs):
        stem = [vocab - 1] + torch.randint(0, 4, (int(torch.randint(0, max_len - 4, (1,), generator=g)),), generator=g).tolist()
        for _ in range(2):
            seqs.append(tuple(stem + torch.randint(0, vocab - 1, (int(torch.randint(1, 4, (1,), generator=g)),), generator=g).tolist()))
    return list(dict.fromkeys(seqs))


def local_gpt_neo(window):
    """GPT-Neo whose local layers (every other one) see only the last ``window`` positions."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(3)
    config = GPTNeoConfig(vocab_size=16, hidden_size=32, num_layers=4, num_heads=2, max_position_embeddings=32,
                          attention_types=[[["global", "local"], 2]], window_size=window)
    return GPTNeoForCausalLM(config).eval()


@pytest.mark.parametrize("make", [lambda: local_gpt_neo(window=3), lambda: local_gpt_neo(window=256),
                                  lambda: tiny_gpt2(vocab=16).eval()], ids=["gpt-neo-window-3", "gpt-neo", "gpt2"])
def test_shared_body_equals_unshared_per_sequence(make, monkeypatch):
    from hf_toponets.evaluation import prefix_scoring

    model, seqs = make(), random_pairs(0)
    batches = [list(range(i, min(i + 6, len(seqs)))) for i in range(0, len(seqs), 6)]
    layers = model.config.num_layers if hasattr(model.config, "num_layers") else model.config.n_layer
    monkeypatch.setattr(prefix_scoring, "KV_BYTES", 30 * 2 * layers * 32 * 4)  # 30 prefixes a chunk: several
    used, real = [], prefix_scoring._score_shared
    monkeypatch.setattr(prefix_scoring, "_score_shared", lambda *a: used.append(a[-1]) or real(*a))
    chunks, real_chunks = [], prefix_scoring._chunks
    monkeypatch.setattr(prefix_scoring, "_chunks", lambda *a: chunks.extend(real_chunks(*a)) or chunks)
    shared = score_sequences(model, seqs, batches, progress=False)
    unshared = score_sequences(model, seqs, batches, progress=False, share_prefixes=False)
    assert used == [30]  # the cached path ran (the check on a sample passed), 30 prefixes per chunk
    table = PrefixTable(seqs, batches)
    assert len(chunks) > 2 and all(len({n for i in c for n in table.seq_nodes[i]}) <= 30 for c in chunks)
    assert sorted(i for c in chunks for i in c) == list(range(len(seqs)))
    assert (shared - unshared).abs().max() <= 1e-5


def test_segments_cover_every_prefix_once_after_its_ancestors():
    from hf_toponets.evaluation.prefix_cache import schedule, segments

    seqs = random_pairs(1)
    table = PrefixTable(seqs, [list(range(len(seqs)))])
    segs = segments(table.parent, table.seq_nodes, list(range(len(seqs))))
    nodes = [n for s in segs for n in s.nodes]
    assert sorted(nodes) == list(range(len(table.parent)))  # every distinct prefix exactly once
    for s in segs:
        path = s.past + s.nodes
        assert [table.parent[n] for n in path] == [-1, *path[:-1]]  # the true ancestors, in order
    done, widths = set(), set()
    for batch in schedule(segs, budget=20):
        assert len({len(s.past) for s in batch}) == 1 and len({len(s.nodes) for s in batch}) == 1  # no padding
        assert len(batch) == 1 or len(batch) * (len(batch[0].past) + len(batch[0].nodes)) <= 20
        for s in batch:
            assert set(s.past) <= done  # every past computed by an earlier forward
            path = s.past + s.nodes
            assert [table.parent[n] for n in path] == [-1, *path[:-1]]  # cut pieces keep their true past
        new = [n for s in batch for n in s.nodes]
        assert done.isdisjoint(new)
        done.update(new)
        widths.add(len(batch[0].nodes))
    assert sorted(done) == list(range(len(table.parent)))  # each prefix once, in some forward
    assert len(widths) > 1  # segments of several widths: the cut-to-width branch ran


def test_a_model_whose_cache_cannot_be_used_falls_back():
    model, seqs = tiny_gpt_neo(vocab=16).eval(), random_pairs(2)
    forward = model.transformer.forward

    def no_cache(*args, cache=None, **kwargs):  # a body that ignores the cache it is given
        return forward(*args, **kwargs)

    model.transformer.forward = no_cache
    got = score_sequences(model, seqs, [list(range(len(seqs)))], progress=False)
    assert got.tolist() == pytest.approx(naive_scores(model, seqs), abs=1e-4)


def test_sharing_only_when_the_body_outweighs_the_head():
    from hf_toponets.evaluation.prefix_scoring import _body_and_head, _body_dominates

    assert _body_dominates(*_body_and_head(tiny_gpt_neo(vocab=16)))  # 2 blocks of width 32 vs 16 x 32 logits
    assert not _body_dominates(*_body_and_head(tiny_gpt_neo(vocab=4096)))  # the head does the work: no sharing
