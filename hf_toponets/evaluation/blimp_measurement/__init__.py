"""BLiMP as a Hugging Face ``evaluate`` measurement: ``evaluate.load(PATH)`` (offline), or the folder published as a Space.

>>> import evaluate
>>> from hf_toponets.evaluation.blimp_measurement import PATH
>>> blimp = evaluate.load(PATH)  # doctest: +SKIP
>>> blimp.compute(paradigms=["passive_1"], model_id="gpt2", data="../shared/data/blimp")["overall"]  # doctest: +SKIP
"""

from pathlib import Path

PATH = str(Path(__file__).resolve().parent)  # the folder holding blimp_measurement.py and its card
