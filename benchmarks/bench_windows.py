"""Integration windows of a GPT-Neo-125M-shaped model (random weights): the word-swap pass and the fits.

Run: ``python benchmarks/bench_windows.py [--n-sequences 20] [--batch-size 41] [--scipy-units 300] [--threads 0]``
(from the repository root; ``../shared/data`` gives the GPT-2 tokenizer and BLiMP, else the embedded
corpus's sentences and a tokenizer trained on it).

- **word swaps**: ``--n-sequences`` sequences of 5 sentences x 8 words (40 words), each run as the
  original + 40 swapped copies, hooks on all 12 ``c_fc`` (3072 units each) accumulating the
  ``|difference|`` sums; timed once, side by side with a plain forward of the transformer body over
  the same padded batches (what the hooks and the accumulation add);
- **fits** of eq. 3 to the 12 x 3072 = 36,864 windows: the batched torch fit (all units at once),
  median over ``--reps``; scipy's ``curve_fit`` per unit (the authors' tool, start (1, 1, 0.5)) on
  ``--scipy-units`` units drawn across the layers, extrapolated to all units; the batched fit on the
  same units, and how the losses compare (the batched fit's grid starts find lower minima than a
  fixed start).
"""

import argparse
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from _models import gpt_neo_125m_toponet
from hf_toponets.analysis.window_fit import fit_windows
from hf_toponets.analysis.windows import _pad_batch, swap_sums, window_theta
from hf_toponets.analysis.word_swap import encode_words, sentence_sequences, swap_variants, swap_vocabulary

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def sentences_and_tokenizer():
    """BLiMP's grammatical sentences and the GPT-2 tokenizer from ../shared/data, else the embedded corpus."""
    if (SHARED / "blimp").is_dir() and (SHARED / "gpt2-tokenizer").is_dir():
        from transformers import AutoTokenizer

        from hf_toponets.evaluation.blimp_data import read_jsonl_paradigm

        sentences = [p.good for f in sorted((SHARED / "blimp").glob("*.jsonl")) for p in read_jsonl_paradigm(f)]
        return sentences, AutoTokenizer.from_pretrained(str(SHARED / "gpt2-tokenizer")), "BLiMP + GPT-2 tokenizer"
    from hf_toponets.analysis.word_swap import split_sentences
    from hf_toponets.training.data import embedded_corpus, train_tokenizer

    corpus = embedded_corpus()
    return split_sentences(" ".join(corpus)), train_tokenizer(corpus, 8192), "embedded corpus (no ../shared/data)"


def plain_forward_batches(tokenizer, sequences, batch_size, seed=0):
    """The same padded batches that swap_sums runs (same swap words), for the plain-forward baseline."""
    cache = {}
    vocabulary = swap_vocabulary(sequences, tokenizer, cache)
    rng = random.Random(seed)
    batches = []
    for words in sequences:
        encoded = [encode_words(v, tokenizer, cache) for v in swap_variants(words, vocabulary, rng)]
        for start in range(0, len(encoded), batch_size):
            batches.append(_pad_batch(encoded[start : start + batch_size], tokenizer.bos_token_id, len(words))[0])
    return batches


def scipy_fits(theta: np.ndarray):
    from scipy.optimize import curve_fit

    def eq3(x, a, b, c):
        return c * (x + 1) ** (-a) + (1 - c) * np.exp(-b * x)

    x = np.arange(theta.shape[1], dtype=float)
    losses = []
    for y in theta:
        p, _ = curve_fit(eq3, x, y, p0=[1, 1, 0.5], bounds=([0, 0, 0], [10, 10, 1]))
        losses.append(float(((eq3(x, *p) - y) ** 2).sum()))
    return np.array(losses)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-sequences", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=41, help="copies per forward (41: a whole sequence)")
    parser.add_argument("--scipy-units", type=int, default=300)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = gpt_neo_125m_toponet()
    modules = {name: model.get_submodule(name) for name in model.config.topo["sheets"]}
    sentences, tokenizer, source = sentences_and_tokenizer()
    sequences = sentence_sequences(sentences, sentence_length=8, n_sentences=5, n_sequences=args.n_sequences)
    n_forwards = args.n_sequences * 41
    print(f"GPT-Neo-125M shape, random weights; {args.n_sequences} sequences x 40 words ({source}); "
          f"{len(modules)} layers x 3072 units; torch threads {torch.get_num_threads()}")

    start = time.perf_counter()
    sums = swap_sums(model, tokenizer, sequences, modules, 21, args.batch_size, progress=False)
    swap_time = time.perf_counter() - start
    batches = plain_forward_batches(tokenizer, sequences, args.batch_size)
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            model.transformer(batch)
    plain_time = time.perf_counter() - start
    tokens = sum(b.numel() for b in batches)
    print(f"word swaps (hooks + sums, stops after the last c_fc): {swap_time:7.1f} s = {n_forwards / swap_time:6.1f} "
          f"sequence-forwards/s ({tokens / swap_time:,.0f} tokens/s)")
    print(f"plain transformer body, same batches:                 {plain_time:7.1f} s = {n_forwards / plain_time:6.1f} "
          f"sequence-forwards/s   ratio {swap_time / plain_time:.2f}")

    theta = torch.cat([window_theta(s.cpu(), 20)[0] for s in sums.values()])  # (36864, 21)
    theta = theta[torch.isfinite(theta).all(1)]
    times = []
    for _ in range(args.reps):
        start = time.perf_counter()
        fit_windows(theta)
        times.append(time.perf_counter() - start)
    batched_all = statistics.median(times)
    units = torch.randperm(len(theta), generator=torch.Generator().manual_seed(0))[: args.scipy_units]
    start = time.perf_counter()
    scipy_loss = scipy_fits(theta[units].numpy())
    scipy_time = time.perf_counter() - start
    start = time.perf_counter()
    ours = fit_windows(theta[units])
    ours_time = time.perf_counter() - start
    per_unit = scipy_time / len(units)
    rel = (ours.loss.numpy() - scipy_loss) / np.maximum(scipy_loss, 1e-30)
    print(f"batched fit, all {len(theta):,} units (median of {args.reps}): {batched_all:7.2f} s")
    print(f"scipy curve_fit, {len(units)} units: {scipy_time:.2f} s = {per_unit * 1e3:.2f} ms/unit -> all units "
          f"~{per_unit * len(theta):.0f} s (extrapolated): {per_unit * len(theta) / batched_all:.1f}x the batched fit")
    print(f"batched fit, the same {len(units)} units: {ours_time:.2f} s; loss vs scipy: lower by > 1e-6 rel on "
          f"{int((rel < -1e-6).sum())}, within 1e-6 on {int((abs(rel) <= 1e-6).sum())}, higher on "
          f"{int((rel > 1e-6).sum())} (max {rel.max():.1e} rel); median R^2 {float(ours.r2.nanmedian()):.3f}")


if __name__ == "__main__":
    main()
