"""BLiMP accuracy of a causal LM as an ``evaluate`` measurement; ``compute`` runs hf_toponets' ``evaluate_blimp``.

Like evaluate's own ``perplexity``, it takes a model id (a Hub id or a saved folder) rather than
predictions: ``compute(paradigms=[...], model_id=..., data=None, batch_size=64, device=None)``.
``paradigms``: BLiMP paradigm names (all 67: ``hf_toponets.evaluation.blimp_data.PARADIGMS``);
``data``: a folder of BLiMP ``<UID>.jsonl`` files, default the Hub dataset ``nyu-mll/blimp``. Returns
:func:`hf_toponets.evaluation.blimp.evaluate_blimp`'s result: ``overall``, ``phenomena``, ``paradigms``
(each with ``accuracy``, ``n`` and lm-evaluation-harness's ``stderr``) and ``n_pairs``.

Loaded as a script by ``evaluate.load``, so its imports are absolute.
"""

import datasets
import evaluate

from hf_toponets.evaluation.blimp import evaluate_blimp

_DESCRIPTION = """BLiMP (Warstadt et al., TACL 2020): 67 paradigms of 1,000 minimal pairs; a pair is correct when the
model gives the grammatical sentence the higher log-likelihood. lm-evaluation-harness 0.4.x's protocol."""
_CITATION = """@article{warstadt2020blimp, title={BLiMP: The Benchmark of Linguistic Minimal Pairs for English},
author={Warstadt, Alex and Parrish, Alicia and Liu, Haokun and Mohananey, Anhad and Peng, Wei and Wang, Sheng-Fu
and Bowman, Samuel R.}, journal={Transactions of the Association for Computational Linguistics}, year={2020}}"""
_INPUTS = """paradigms (list of str): BLiMP paradigms to score. model_id (str): Hub id or folder of a causal LM with its
tokenizer. data (str, optional): folder of <UID>.jsonl files; default nyu-mll/blimp. batch_size (int): sequences
per forward pass (>= 2). device (str, optional): where to run, default the model's."""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class BlimpMeasurement(evaluate.Measurement):
    def _info(self):
        return evaluate.MeasurementInfo(
            module_type="measurement", description=_DESCRIPTION, citation=_CITATION, inputs_description=_INPUTS,
            features=datasets.Features({"paradigms": datasets.Value("string")}),
            reference_urls=["https://github.com/alexwarstadt/blimp"],
        )

    def _compute(self, paradigms, model_id, data=None, batch_size=64, device=None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(model_id, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(model_id)
        return evaluate_blimp(model, tokenizer, data, paradigms, batch_size, device=device, progress=False)
