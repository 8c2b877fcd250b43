"""train_clm.py runs interrupted and resumed, under ``torchrun`` or plain ``python``; this checkout is imported (asserted).

    python recipe_worker.py STEP kill -- TRAIN_CLM_ARGS     # SIGKILLs itself when the global step reaches STEP
    torchrun --nproc_per_node 2 recipe_worker.py OUT recipe -- TRAIN_CLM_ARGS
        # OUT/full: uninterrupted; OUT/run: stopped after step 3 (its last checkpoint is step 2), then
        # restarted with --resume_from_checkpoint true; rank 0 writes OUT/histories.json (both runs' log_history)

Run by tests/training/test_recipes.py.
"""

import json
import os
import signal
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
CHECKOUT = TESTS.parent
sys.path[:0] = [str(CHECKOUT), str(TESTS), str(CHECKOUT / "training_scripts")]

from transformers import TrainerCallback  # noqa: E402

import hf_toponets  # noqa: E402
import train_clm  # noqa: E402
from conftest import end_worker  # noqa: E402

assert Path(hf_toponets.__file__).resolve().is_relative_to(CHECKOUT), f"imported {hf_toponets.__file__}, not {CHECKOUT}"


class Interrupt(TrainerCallback):
    """At the end of optimizer step ``step``: SIGKILL this process (``kill``), else stop training as a preemption would."""

    def __init__(self, step: int, kill: bool):
        self.step, self.kill = step, kill

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            control.should_training_stop = True


class StepRecorder(TrainerCallback):
    """The optimizer steps this process ran (a resumed run must not redo those before its checkpoint)."""

    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def recipe(out: Path, argv: list[str]) -> None:
    full = train_clm.main([*argv, "--output_dir", str(out / "full")])
    train_clm.main([*argv, "--output_dir", str(out / "run")], callbacks=[Interrupt(3, kill=False)])
    ran = StepRecorder()
    resumed = train_clm.main([*argv, "--output_dir", str(out / "run"), "--resume_from_checkpoint", "true"], callbacks=[ran])
    if resumed.is_world_process_zero():
        histories = {"full": full.state.log_history, "resumed": resumed.state.log_history, "resumed_steps": ran.steps}
        (out / "histories.json").write_text(json.dumps(histories))


if __name__ == "__main__":
    split = sys.argv.index("--")
    value, mode, argv = sys.argv[1], sys.argv[2], sys.argv[split + 1 :]
    if mode == "kill":
        train_clm.main(argv, callbacks=[Interrupt(int(value), kill=True)])
    else:
        recipe(Path(value), argv)
    end_worker()
