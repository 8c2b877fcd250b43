"""TopoTrainer with BLiMP at evaluation, the card at save time, and push_to_hub against the fake Hub."""

import json
import math

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import TrainerCallback

from conftest import ALICE
from hf_toponets import TopoConfig, TopoTrainer
from test_trainer import args, token_dataset, causal_lm
from conftest import tiny_gpt_neo

PAIRS = [("The cat sleeps.", "The cat sleep."), ("Dogs bark.", "Dogs barks."), ("A man is here.", "A man are here.")]


UIDS = ["regular_plural_subject_verb_agreement_1", "anaphor_gender_agreement"]


def blimp_folder(tmp_path):
    folder = tmp_path / "blimp"
    folder.mkdir()
    for uid in UIDS:
        rows = [{"sentence_good": g, "sentence_bad": b, "UID": uid, "pairID": str(i), "field": "morphology",
                 "linguistics_term": "x"} for i, (g, b) in enumerate(PAIRS)]
        (folder / f"{uid}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def gpt2_tokenizer(shared_data):
    from transformers import GPT2TokenizerFast

    tok = GPT2TokenizerFast.from_pretrained(shared_data / "gpt2-tokenizer")
    tok.pad_token = tok.eos_token  # the Trainer's padding collator needs one
    return tok


def test_blimp_at_evaluation_is_logged_saved_and_carded(tmp_path, shared_data):
    tok = gpt2_tokenizer(shared_data)
    model = causal_lm(lambda seed: tiny_gpt_neo(seed=seed, vocab=len(tok)))
    trainer = TopoTrainer(model=model, args=args(tmp_path / "out", eval_strategy="steps", eval_steps=1),
                          train_dataset=token_dataset(vocab=len(tok)), eval_dataset=token_dataset(vocab=len(tok), seed=1),
                          processing_class=tok, topo_config=TopoConfig(target_modules=["c_fc"], tau=1.0),
                          blimp_data=str(blimp_folder(tmp_path)), blimp_paradigms=UIDS, model_card={"datasets": ["toy"], "license": "mit"})
    trainer.train()
    logged = [h for h in trainer.state.log_history if "eval_blimp_overall" in h]
    assert len(logged) == 1 and "eval_loss" in logged[0]  # one log entry with the eval dataset's metrics
    phenomena = sorted(k for k in logged[0] if k.startswith("eval_blimp_"))
    assert phenomena == ["eval_blimp_anaphor_agreement", "eval_blimp_overall", "eval_blimp_subject_verb_agreement"]
    assert 0.0 <= logged[0]["eval_blimp_overall"] <= 1.0
    trainer.save_model(str(tmp_path / "final"))
    saved = json.loads((tmp_path / "final" / "blimp_results.json").read_text())
    assert saved["overall"] == pytest.approx(logged[0]["eval_blimp_overall"])
    assert saved["paradigms"]["anaphor_gender_agreement"]["n"] == 3
    card = ModelCard.load(tmp_path / "final" / "README.md")
    assert "toponets" in card.data.tags and card.data.license == "mit"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == pytest.approx(saved["overall"], abs=1e-4) and "perplexity" in results
    # re-rendered from the folder alone (as `hf-toponets card` does), the card keeps its measurements
    from hf_toponets.hub.folder import write_model_card

    again = ModelCard.load(write_model_card(tmp_path / "final"))
    assert {r.metric_type: r.metric_value for r in again.data.eval_results} == results


def test_eval_loss_without_blimp_still_plain(tmp_path):
    trainer = TopoTrainer(model=tiny_gpt_neo(), args=args(tmp_path), eval_dataset=token_dataset(),
                          topo_config=TopoConfig(target_modules=["c_fc"]))
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and not any("blimp" in k for k in metrics)


class SeenByCallbacks(TrainerCallback):
    def __init__(self):
        self.metrics = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.metrics.append(dict(metrics))


def blimp_trainer(tmp_path, shared_data, eval_dataset=None, **kw):
    tok = gpt2_tokenizer(shared_data)
    model = causal_lm(lambda seed: tiny_gpt_neo(seed=seed, vocab=len(tok)))
    return TopoTrainer(model=model, args=args(tmp_path / "out", **kw), train_dataset=token_dataset(vocab=len(tok)),
                       eval_dataset=eval_dataset, processing_class=tok, blimp_paradigms=UIDS,
                       topo_config=TopoConfig(target_modules=["c_fc"], tau=1.0), blimp_data=str(blimp_folder(tmp_path)))


@pytest.mark.slow
def test_metric_for_best_model_and_callbacks_see_blimp(tmp_path, shared_data):
    seen = SeenByCallbacks()
    held_out = token_dataset(vocab=len(gpt2_tokenizer(shared_data)), seed=1)
    trainer = blimp_trainer(tmp_path, shared_data, eval_dataset=held_out, max_steps=3, learning_rate=5.0, eval_strategy="steps", eval_steps=1,
                            save_strategy="steps", save_steps=1, metric_for_best_model="blimp_overall",
                            load_best_model_at_end=True)
    trainer.add_callback(seen)
    trainer.train()
    scores = [m["eval_blimp_overall"] for m in seen.metrics]
    assert len(scores) == 3  # on_evaluate saw BLiMP at every evaluation
    assert trainer.state.best_metric == max(scores)
    best_step = 1 + scores.index(max(scores))
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best_step}")


def test_blimp_runs_once_per_evaluate_with_several_eval_datasets(tmp_path, shared_data, monkeypatch):
    import hf_toponets.training.mixin as mixin

    calls = []
    real = mixin.evaluate_blimp
    monkeypatch.setattr(mixin, "evaluate_blimp", lambda *a, **k: calls.append(1) or real(*a, **k))
    vocab = len(gpt2_tokenizer(shared_data))
    datasets = {"wiki": token_dataset(vocab=vocab, seed=1), "code": token_dataset(vocab=vocab, seed=2)}
    trainer = blimp_trainer(tmp_path, shared_data, eval_dataset=datasets, per_device_eval_batch_size=8)
    metrics = trainer.evaluate()
    assert len(calls) == 1
    assert {"eval_wiki_loss", "eval_code_loss", "eval_blimp_overall"} <= set(metrics)
    assert sum("eval_blimp_overall" in h for h in trainer.state.log_history) == 1
    trainer.save_model(str(tmp_path / "final"))  # the card's perplexity: the first eval dataset's
    card = ModelCard.load(tmp_path / "final" / "README.md")
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["perplexity"] == pytest.approx(math.exp(metrics["eval_wiki_loss"]), rel=1e-4)


def test_blimp_alone_without_an_eval_dataset(tmp_path, shared_data):
    seen = SeenByCallbacks()
    trainer = blimp_trainer(tmp_path, shared_data)
    trainer.add_callback(seen)
    metrics = trainer.evaluate()
    assert set(metrics) - {"epoch"} == {"eval_blimp_overall", "eval_blimp_anaphor_agreement", "eval_blimp_subject_verb_agreement"}
    assert seen.metrics == [metrics] and trainer.state.log_history[-1]["eval_blimp_overall"] == metrics["eval_blimp_overall"]


def test_blimp_needs_a_tokenizer(tmp_path):
    with pytest.raises(ValueError, match="blimp_data needs the tokenizer"):
        TopoTrainer(model=tiny_gpt_neo(), args=args(tmp_path), topo_config=TopoConfig(), blimp_data=str(tmp_path))


def test_bad_model_card_key(tmp_path):
    with pytest.raises(ValueError, match="model_card has unknown keys \\['licence'\\]"):
        TopoTrainer(model=tiny_gpt_neo(), args=args(tmp_path), topo_config=TopoConfig(), model_card={"licence": "mit"})


def test_push_to_hub_publishes_one_commit_with_metadata(online, tmp_path):
    from transformers import AutoModelForCausalLM

    model = causal_lm(tiny_gpt_neo)
    trainer = TopoTrainer(model=model, args=args(tmp_path / "run", hub_model_id="alice/trained", hub_token=ALICE),
                          train_dataset=token_dataset(), topo_config=TopoConfig(target_modules=["c_fc"], tau=2.0))
    trainer.train()
    result = trainer.push_to_hub()
    repo = online.repos["alice/trained"]
    files = set(repo.commits[result.commit_oid])
    assert {"model.safetensors", "config.json", "README.md"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
    loaded = AutoModelForCausalLM.from_pretrained("alice/trained")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert TopoConfig.from_pretrained("alice/trained").sheets == trainer.topo_config.sheets
    again = trainer.push_to_hub()
    assert not again.changed  # nothing new to commit


def test_mid_training_pushes_carry_the_metadata(online, tmp_path):
    """Trainer's own hub_strategy pushes (push_to_hub=True) upload config.json with its topo entry."""
    trainer = TopoTrainer(model=causal_lm(tiny_gpt_neo),
                          args=args(tmp_path / "mid", max_steps=2, per_device_train_batch_size=4, push_to_hub=True,
                                    hub_model_id="alice/mid", hub_token=ALICE, hub_strategy="every_save",
                                    save_strategy="steps", save_steps=1),
                          train_dataset=token_dataset(), topo_config=TopoConfig(target_modules=["c_fc"], tau=1.0))
    trainer.train()
    trainer._finish_current_push()  # the Trainer pushes in the background
    repo = online.repos["alice/mid"]
    assert len(repo.log) >= 2  # creation + at least one mid-training commit
    head = repo.commits[repo.resolve("main")]
    config = json.loads(head["config.json"])
    assert config["topo"]["sheets"] == trainer.topo_config.sheets
    assert "model.safetensors" in head  # (the card comes with the final push_to_hub, not these)


PICKLES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def all_pushed_files(repo):
    return {f for commit in repo.commits.values() for f in commit}


def test_a_save_with_push_to_hub_gathers_once_and_pushes_that_folder(online, tmp_path):
    trainer = TopoTrainer(model=causal_lm(tiny_gpt_neo), args=args(tmp_path / "run", push_to_hub=True, hub_model_id="alice/saved",
                                                                     hub_token=ALICE),
                          train_dataset=token_dataset(), topo_config=TopoConfig(target_modules=["c_fc"], tau=1.0))
    saves = []
    real_save = trainer._save
    trainer._save = lambda *a, **k: saves.append(a[0] if a else k.get("output_dir")) or real_save(*a, **k)
    trainer.save_model(str(tmp_path / "final"))
    assert saves == [str(tmp_path / "final")]  # one gather and write; Trainer's push would save output_dir again
    head = online.repos["alice/saved"].commits[online.repos["alice/saved"].resolve("main")]
    assert head["model.safetensors"] == (tmp_path / "final" / "model.safetensors").read_bytes()
    assert not (tmp_path / "run" / "model.safetensors").exists()  # the folder saved, not output_dir, was pushed


def test_push_to_hub_honours_blocking_and_card_arguments(online, tmp_path):
    model = causal_lm(tiny_gpt_neo)
    model.config._name_or_path = "EleutherAI/gpt-neo-125m"  # a Hub id: Trainer's rule infers base_model from it
    trainer = TopoTrainer(model=model, args=args(tmp_path / "run", hub_model_id="alice/facts", hub_token=ALICE),
                          train_dataset=token_dataset(), topo_config=TopoConfig(target_modules=["c_fc"], tau=1.0))
    future = trainer.push_to_hub(blocking=False, license="apache-2.0", tags="my-tag", dataset=["wikitext"], language="en")
    result = future.result(timeout=60)
    card = ModelCard.load(tmp_path / "run" / "README.md")
    assert card.data.license == "apache-2.0" and card.data.base_model == "EleutherAI/gpt-neo-125m"
    assert card.data.datasets == ["wikitext"] and card.data.language == "en"
    assert {"my-tag", "toponets"} <= set(card.data.tags)
    pushed = online.repos["alice/facts"].commits[result.commit_oid]
    assert ModelCard(pushed["README.md"].decode()).data.license == "apache-2.0"
    again = trainer.push_to_hub(finetuned_from="other/base")  # explicit wins over inferred; earlier facts stay
    card = ModelCard(online.repos["alice/facts"].commits[again.commit_oid]["README.md"].decode())
    assert card.data.base_model == "other/base" and card.data.license == "apache-2.0"
    with pytest.raises(ValueError, match="unknown card arguments \\['licence'\\]"):
        trainer.push_to_hub(licence="mit")


def test_a_local_name_or_path_is_no_base_model(tmp_path):
    model = causal_lm(tiny_gpt_neo)
    model.config._name_or_path = str(tmp_path)  # a local folder, as after from_pretrained(folder)
    trainer = TopoTrainer(model=model, args=args(tmp_path / "run"), train_dataset=token_dataset(),
                          topo_config=TopoConfig(target_modules=["c_fc"], tau=1.0))
    trainer.save_model(str(tmp_path / "final"))
    assert ModelCard.load(tmp_path / "final" / "README.md").data.base_model is None


def test_mid_training_pushes_publish_no_pickle_and_checkpoint_strategies_are_refused(online, tmp_path):
    kw = dict(max_steps=2, per_device_train_batch_size=4, push_to_hub=True, hub_token=ALICE, save_strategy="steps",
              save_steps=1)
    trainer = TopoTrainer(model=causal_lm(tiny_gpt_neo), args=args(tmp_path / "mid", hub_model_id="alice/nopickle", **kw),
                          train_dataset=token_dataset(), topo_config=TopoConfig(target_modules=["c_fc"], tau=1.0))
    trainer.train()
    trainer._finish_current_push()
    files = all_pushed_files(online.repos["alice/nopickle"])
    assert "model.safetensors" in files and not [f for f in files if f.endswith(PICKLES)]
    assert not list((tmp_path / "mid").glob("training_args.bin"))
    with pytest.raises(ValueError, match="hub_strategy='checkpoint' uploads the optimizer"):
        TopoTrainer(model=causal_lm(tiny_gpt_neo), args=args(tmp_path / "ck", hub_model_id="alice/ck", hub_strategy="checkpoint", **kw),
                    train_dataset=token_dataset(), topo_config=TopoConfig(target_modules=["c_fc"], tau=1.0))


def test_a_sharded_toponet_is_pushed_whole_and_a_missing_shard_refused(online, tmp_path):
    from transformers import AutoModelForCausalLM

    from hf_toponets.hub.push import push_folder

    trainer = TopoTrainer(model=causal_lm(tiny_gpt_neo), args=args(tmp_path / "run"), train_dataset=token_dataset(),
                          topo_config=TopoConfig(target_modules=["c_fc"], tau=1.0))
    folder = tmp_path / "sharded"
    trainer.model.save_pretrained(folder, max_shard_size="40KB")
    shards = sorted(p.name for p in folder.glob("model-*.safetensors"))
    assert len(shards) >= 2
    result = push_folder(folder, "alice/sharded", token=ALICE)
    assert {*shards, "model.safetensors.index.json"} <= set(result.files)
    loaded = AutoModelForCausalLM.from_pretrained("alice/sharded")
    for (n, a), b in zip(trainer.model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), n
    (folder / shards[-1]).unlink()
    with pytest.raises(ValueError, match=f"names shards \\['{shards[-1]}'\\] that are not in"):
        push_folder(folder, "alice/sharded", token=ALICE)
