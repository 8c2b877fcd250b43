import pytest
import torch

from conftest import tiny_gpt_neo
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
