"""The recipes as users run them: killed and resumed, streamed from data files, the paper's two configs under torchrun."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from recipe_worker import StepRecorder
from test_trainer_distributed import CHECKOUT, torchrun
from test_train_clm import ROOT, train_clm

from hf_toponets import TopoConfig

WORKER = Path(__file__).with_name("recipe_worker.py")
CONFIGS = ROOT / "training_scripts" / "configs"
SHORT = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1",
         "--eval_blocks", "8", "--tokenizer_vocab_size", "300", "--per_device_train_batch_size", "2"]


def by_step(history, key):
    return {h["step"]: h[key] for h in history if key in h}


def assert_same_weights(a: Path, b: Path, rel: float = 1e-6):
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        assert float((wa[name] - wb[name]).norm()) <= rel * float(wb[name].norm()) + 1e-12, name


@pytest.mark.slow
def test_a_killed_run_restarted_with_resume_true_continues_exactly(tmp_path):
    """SIGKILL after step 3 (the last save: step 2), then the same command with --resume_from_checkpoint true."""
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(CHECKOUT)}
    proc = subprocess.run([sys.executable, str(WORKER), "3", "kill", "--", *SHORT, "--output_dir", str(run)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    ran = StepRecorder()
    resumed = train_clm.main([*SHORT, "--output_dir", str(run), "--resume_from_checkpoint", "true"], callbacks=[ran])
    assert ran.steps == [3, 4]  # continued from checkpoint-2, not restarted
    full = train_clm.main([*SHORT, "--output_dir", str(tmp_path / "full")])
    for key in ("loss", "topo/loss", "topo/tau"):  # equal losses at steps 3 and 4: same weights and same batches
        got, want = by_step(resumed.state.log_history, key), by_step(full.state.log_history, key)
        assert [got[s] for s in (3, 4)] == pytest.approx([want[s] for s in (3, 4)], rel=1e-6), key
    assert by_step(full.state.log_history, "topo/tau")[4] == pytest.approx(5.0 * 3 / 50)  # the schedule: linear:50:0:1
    assert_same_weights(run, tmp_path / "full")


def test_resume_true_without_a_checkpoint_starts_from_scratch(tmp_path):
    assert train_clm.resume_checkpoint("true", str(tmp_path / "absent")) is None
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-10").mkdir()
    assert train_clm.resume_checkpoint("True", str(tmp_path)) == str(tmp_path / "checkpoint-10")
    assert train_clm.resume_checkpoint("some/path", str(tmp_path)) == "some/path"
    assert train_clm.resume_checkpoint(None, str(tmp_path)) is None


# ---- data files in the schemas of the paper's corpora -------------------------------------------------------------
SCHEMAS = {  # column -> a value for row i (text comes from the embedded corpus)
    "wikipedia": {"id": lambda i: str(i), "url": lambda i: f"https://en.wikipedia.org/wiki?curid={i}",
                  "title": lambda i: f"Article {i}"},
    "fineweb_edu": {"id": lambda i: f"<urn:uuid:{i:08d}>", "dump": lambda i: "CC-MAIN-2024-10",
                    "url": lambda i: f"https://example.edu/{i}", "file_path": lambda i: "s3://x.warc.gz",
                    "language": lambda i: "en", "language_score": lambda i: 0.97, "token_count": lambda i: 100 + i,
                    "score": lambda i: 3.1, "int_score": lambda i: 3},
}


def write_shards(folder: Path, schema: str, n_shards: int = 2, docs: int = 100) -> str:
    """``n_shards`` parquet files of ``docs`` documents (paragraphs of the embedded corpus) with the corpus's
    columns; returns their glob."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hf_toponets.training.data import embedded_corpus

    texts = [p for topic in embedded_corpus() for p in topic.split("\n\n") if p.strip()][: n_shards * docs]
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        rows = [{"text": texts[i], **{k: f(i) for k, f in SCHEMAS[schema].items()}} for i in range(s * docs, (s + 1) * docs)]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"train-{s:05d}-of-{n_shards:05d}.parquet")
    return str(folder / "*.parquet")


@pytest.mark.parametrize("streaming", [False, True])
def test_data_files_give_the_same_blocks_streamed_or_not(tmp_path, streaming):
    shards = write_shards(tmp_path / "wiki", "wikipedia", docs=4)
    script, *_ = train_clm.parse(["--data_files", shards, "--eval_blocks", "4", "--block_size", "16",
                                  "--streaming", str(streaming), "--tokenizer_vocab_size", "300"])
    tokenizer = train_clm.build_tokenizer(script)
    train, held_out = train_clm.build_datasets(script, tokenizer)
    if streaming:  # in file order: the held-out blocks are the first ones
        blocks = [r["input_ids"] for r in held_out] + [r["input_ids"] for r in train]
        script.streaming = False
        from datasets import load_dataset

        from hf_toponets.training.data import pack_dataset

        raw = load_dataset("parquet", data_files=shards, split="train")
        assert blocks == pack_dataset(raw, tokenizer, 16)["input_ids"]
    else:
        assert len(held_out) == 4 and len(train) > 4 and train.column_names == ["input_ids", "labels"]


def test_data_files_of_mixed_formats_are_refused():
    with pytest.raises(ValueError, match="shards of one format"):
        train_clm.file_format(["a.parquet", "b.jsonl"])
    assert train_clm.file_format(["hf://datasets/u/n/data/*.jsonl"]) == "json"


# ---- the paper's two configs as shipped, under 2-process DDP --------------------------------------------------------
TINY = {"gpt_neo_125m_wikipedia.yaml": ("wikipedia", {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "window_size": 16,
                                                      "attention_types": [[["global", "local"], 1]],
                                                      "max_position_embeddings": 64}),
        "nanogpt_124m_fineweb_edu.yaml": ("fineweb_edu", {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64})}


BLIMP_UIDS = ("regular_plural_subject_verb_agreement_1", "anaphor_gender_agreement")


def blimp_folder(folder: Path) -> Path:
    pairs = [("The cat sleeps.", "The cat sleep."), ("Dogs bark.", "Dogs barks."), ("A man is here.", "A man are here.")]
    folder.mkdir(parents=True)
    for uid in BLIMP_UIDS:
        rows = [{"sentence_good": g, "sentence_bad": b, "UID": uid, "pairID": str(i)} for i, (g, b) in enumerate(pairs)]
        (folder / f"{uid}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(TINY))
def test_paper_recipe_under_torchrun_trains_evaluates_checkpoints_resumes_and_saves(tmp_path, shared_data, config):
    schema, model = TINY[config]
    argv = [str(CONFIGS / config),
            # the data: local shards in the corpus's schema, the same GPT-2 BPE offline, a small BLiMP folder
            "--data_files", write_shards(tmp_path / "shards", schema), "--tokenizer_name", str(shared_data / "gpt2-tokenizer"),
            "--blimp_data", str(blimp_folder(tmp_path / "blimp")), "--blimp_paradigms", *BLIMP_UIDS,
            # the size: a tiny model, short blocks and batches, 4 steps with a save and an evaluation every 2
            "--config_overrides", json.dumps(model), "--block_size", "32", "--eval_blocks", "8",
            "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4", "--max_steps", "4",
            "--warmup_steps", "1", "--logging_steps", "1", "--eval_steps", "2", "--save_steps", "2",
            # this machine: no GPU (bf16 autocast needs one), no tensorboard
            "--bf16", "false", "--report_to", "none"]
    out = tmp_path / "out"
    torchrun(out, "recipe", worker=WORKER, extra=("--", *argv))
    histories = json.loads((out / "histories.json").read_text())
    full, resumed = histories["full"], histories["resumed"]
    assert histories["resumed_steps"] == [3, 4]
    for key in ("loss", "topo/loss"):
        assert [by_step(resumed, key)[s] for s in (3, 4)] == pytest.approx([by_step(full, key)[s] for s in (3, 4)], rel=1e-6)
    assert sorted(by_step(full, "eval_loss")) == [2, 4] and by_step(full, "eval_blimp_overall")
    assert_same_weights(out / "run", out / "full")
    run = out / "run"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    saved = json.loads((run / "config.json").read_text())
    assert TopoConfig.from_pretrained(str(run)).sheets == {f"transformer.h.{i}.mlp.c_fc": [8, 16, 32] for i in range(2)}
    assert saved["topo"]["tau"] == TopoConfig.from_pretrained(str(run)).tau
    card = (run / "README.md").read_text()
    assert "toponets" in card and "shards/*.parquet" in card  # the data files the run read
