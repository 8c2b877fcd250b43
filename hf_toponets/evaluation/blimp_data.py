"""BLiMP's 67 paradigms, their 12 phenomena, and reading the minimal pairs.

Two sources hold the same rows: a local folder of ``<UID>.jsonl`` files as published by the
BLiMP authors (field ``pairID``, a string) and the Hub dataset ``nyu-mll/blimp`` (one config
per paradigm, split ``train``, field ``pair_id``, an int). Both become
``{uid: [BlimpPair, ...]}`` in file order.

>>> pairs = load_blimp("../shared/data/blimp", paradigms=["passive_1"])  # doctest: +SKIP
>>> pairs["passive_1"][0].pair_id, len(pairs["passive_1"])  # doctest: +SKIP
(0, 1000)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

HUB_DATASET = "nyu-mll/blimp"

# The 12 phenomena of Warstadt et al. (TACL 2020, Table 4). The data's `linguistics_term` gives the
# same grouping except that it tags the two animate_subject_* paradigms "s-selection"; the paper
# counts them under argument structure (9 paradigms).
PHENOMENA: dict[str, tuple[str, ...]] = {
    "anaphor_agreement": ("anaphor_gender_agreement", "anaphor_number_agreement"),
    "argument_structure": (
        "animate_subject_passive", "animate_subject_trans", "causative", "drop_argument", "inchoative",
        "intransitive", "passive_1", "passive_2", "transitive",
    ),
    "binding": (
        "principle_A_c_command", "principle_A_case_1", "principle_A_case_2", "principle_A_domain_1",
        "principle_A_domain_2", "principle_A_domain_3", "principle_A_reconstruction",
    ),
    "control_raising": (
        "existential_there_object_raising", "existential_there_subject_raising",
        "expletive_it_object_raising", "tough_vs_raising_1", "tough_vs_raising_2",
    ),
    "determiner_noun_agreement": (
        "determiner_noun_agreement_1", "determiner_noun_agreement_2", "determiner_noun_agreement_irregular_1",
        "determiner_noun_agreement_irregular_2", "determiner_noun_agreement_with_adj_2",
        "determiner_noun_agreement_with_adj_irregular_1", "determiner_noun_agreement_with_adj_irregular_2",
        "determiner_noun_agreement_with_adjective_1",
    ),
    "ellipsis": ("ellipsis_n_bar_1", "ellipsis_n_bar_2"),
    "filler_gap_dependency": (
        "wh_questions_object_gap", "wh_questions_subject_gap", "wh_questions_subject_gap_long_distance",
        "wh_vs_that_no_gap", "wh_vs_that_no_gap_long_distance", "wh_vs_that_with_gap",
        "wh_vs_that_with_gap_long_distance",
    ),
    "irregular_forms": ("irregular_past_participle_adjectives", "irregular_past_participle_verbs"),
    "island_effects": (
        "adjunct_island", "complex_NP_island", "coordinate_structure_constraint_complex_left_branch",
        "coordinate_structure_constraint_object_extraction", "left_branch_island_echo_question",
        "left_branch_island_simple_question", "sentential_subject_island", "wh_island",
    ),
    "npi_licensing": (
        "matrix_question_npi_licensor_present", "npi_present_1", "npi_present_2", "only_npi_licensor_present",
        "only_npi_scope", "sentential_negation_npi_licensor_present", "sentential_negation_npi_scope",
    ),
    "quantifiers": (
        "existential_there_quantifiers_1", "existential_there_quantifiers_2", "superlative_quantifiers_1",
        "superlative_quantifiers_2",
    ),
    "subject_verb_agreement": (
        "distractor_agreement_relational_noun", "distractor_agreement_relative_clause",
        "irregular_plural_subject_verb_agreement_1", "irregular_plural_subject_verb_agreement_2",
        "regular_plural_subject_verb_agreement_1", "regular_plural_subject_verb_agreement_2",
    ),
}
PHENOMENON_OF: dict[str, str] = {uid: name for name, uids in PHENOMENA.items() for uid in uids}
PARADIGMS: tuple[str, ...] = tuple(sorted(PHENOMENON_OF))  # the harness's task order
assert len(PARADIGMS) == 67


class BlimpPair(NamedTuple):
    """One minimal pair: the grammatical and the ungrammatical sentence."""

    pair_id: int
    good: str
    bad: str


def resolve_paradigms(paradigms: str | Iterable[str] | None) -> list[str]:
    """``None`` -> all 67 UIDs; ``"a,b"`` or ``["a", "b"]`` -> those, checked, in :data:`PARADIGMS` order."""
    if paradigms is None:
        return list(PARADIGMS)
    names = [p.strip() for p in paradigms.split(",")] if isinstance(paradigms, str) else list(paradigms)
    unknown = [p for p in names if p not in PHENOMENON_OF]
    if unknown:
        raise ValueError(f"paradigms: unknown BLiMP paradigm(s) {unknown}; valid names: {', '.join(PARADIGMS)}")
    if not names:
        raise ValueError("paradigms: an empty selection; give at least one BLiMP paradigm or None for all 67")
    return [p for p in PARADIGMS if p in set(names)]


def load_blimp(data: str | Path | None = None, paradigms: str | Iterable[str] | None = None) -> dict[str, list[BlimpPair]]:
    """The pairs of the chosen paradigms: from a folder of ``<UID>.jsonl`` files, or the Hub when ``None``."""
    uids = resolve_paradigms(paradigms)
    if data is None:
        return {uid: _hub_paradigm(uid) for uid in uids}
    folder = Path(data)
    if not folder.is_dir():
        raise ValueError(f"data: {folder} is not a folder; give a folder of BLiMP <UID>.jsonl files or None for the Hub")
    missing = [uid for uid in uids if not (folder / f"{uid}.jsonl").is_file()]
    if missing:
        raise ValueError(
            f"data: {folder} lacks {len(missing)} BLiMP file(s) ({', '.join(f'{m}.jsonl' for m in missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}); it should hold one <UID>.jsonl per paradigm"
        )
    return {uid: read_jsonl_paradigm(folder / f"{uid}.jsonl") for uid in uids}


def read_jsonl_paradigm(path: Path) -> list[BlimpPair]:
    """The pairs of one published ``<UID>.jsonl`` file; a bad line raises ``ValueError`` naming file and line."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                pairs.append(_to_pair(json.loads(line), "pairID"))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"data: {path}:{lineno}: not a BLiMP row ({type(e).__name__}: {e})") from None
    if not pairs:
        raise ValueError(f"data: {path} holds no pairs")
    return pairs


def hub_rows_to_pairs(rows: Iterable[dict], where: str = HUB_DATASET) -> list[BlimpPair]:
    """Rows of the Hub dataset (``datasets.Dataset`` or dicts with ``pair_id``) as :class:`BlimpPair`."""
    pairs = []
    for i, row in enumerate(rows):
        try:
            pairs.append(_to_pair(row, "pair_id"))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"data: {where} row {i}: not a BLiMP row ({type(e).__name__}: {e})") from None
    return pairs


def _to_pair(row: dict, id_field: str) -> BlimpPair:
    good, bad = row["sentence_good"], row["sentence_bad"]
    if not (isinstance(good, str) and isinstance(bad, str)):
        raise TypeError("sentence_good and sentence_bad must be strings")
    pair_id = row[id_field]
    if isinstance(pair_id, bool) or not isinstance(pair_id, (int, str)):
        raise TypeError(f"{id_field} must be an integer or a string of one, got {pair_id!r}")
    return BlimpPair(int(pair_id), good, bad)


def _hub_paradigm(uid: str) -> list[BlimpPair]:
    from datasets import load_dataset  # network or the datasets cache; only this path needs it

    return hub_rows_to_pairs(load_dataset(HUB_DATASET, uid, split="train"), f"{HUB_DATASET}/{uid}")

