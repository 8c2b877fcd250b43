"""One TopoTrainer SGD step under DeepSpeed ZeRO-2, then ZeRO-3, on ``torchrun --nproc_per_node 2`` (CPU, gloo).

Usage: ``torchrun --nproc_per_node 2 tests/training/deepspeed_worker.py OUT_PREFIX MODEL_FOLDER``; the GPT-2 in
MODEL_FOLDER is loaded with ``from_pretrained`` after the DeepSpeed config exists, so under ZeRO-3 ``zero.Init``
partitions it at load (each parameter an empty partition outside its module's forward: the case where sheet
shapes must come from module attributes). Global batch 8 = 2 ranks x 2 per device x 2 accumulation steps.
Rank 0 writes ``OUT_PREFIX.zero<stage>.safetensors`` (the c_fc weights after the step) and prints the shapes seen.
Run by tests/training/test_trainer_deepspeed.py; this checkout is imported (asserted).
"""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
CHECKOUT = TESTS.parent
sys.path[:0] = [str(CHECKOUT), str(TESTS), str(TESTS / "training")]

import deepspeed  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM, TrainingArguments  # noqa: E402

import hf_toponets  # noqa: E402
from hf_toponets import TopoConfig, TopoTrainer  # noqa: E402
from conftest import end_worker  # noqa: E402
from test_trainer import token_dataset  # noqa: E402

assert Path(hf_toponets.__file__).resolve().is_relative_to(CHECKOUT), f"imported {hf_toponets.__file__}, not {CHECKOUT}"


def step(stage: int, out: str, folder: str) -> None:
    config = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
              "train_batch_size": "auto", "gradient_clipping": "auto",
              "zero_optimization": {"stage": stage, "stage3_gather_16bit_weights_on_model_save": True}}
    args = TrainingArguments(
        output_dir=str(Path(out).parent / f"zero{stage}"), per_device_train_batch_size=2, gradient_accumulation_steps=2,
        max_steps=1, learning_rate=0.5, optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0, report_to=[],
        save_strategy="no", logging_steps=1, seed=0, use_cpu=True, disable_tqdm=True, deepspeed=config,
    )
    _ = args.device  # the process group, before zero.Init sizes its partitions
    deepspeed.init_distributed(dist_backend="gloo")
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.loss_type = "ForCausalLM"
    shape = tuple(model.transformer.h[0].mlp.c_fc.weight.shape)
    trainer = TopoTrainer(model=model, args=args, train_dataset=token_dataset(),
                          topo_config=TopoConfig(target_modules=["c_fc"], tau=2.0))
    trainer.train()
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped)  # gathers ZeRO-3 partitions (collective)
    if trainer.accelerator.is_main_process:
        save_file({k: v.detach().float().contiguous().clone() for k, v in state.items() if "c_fc" in k},
                  f"{out}.zero{stage}.safetensors")
        print(f"ZERO{stage} shape at load {shape}, sheets {trainer.topo_config.sheets}")


if __name__ == "__main__":
    for stage in (2, 3):
        step(stage, sys.argv[1], sys.argv[2])
    end_worker()
