"""Run finetune.main and SIGKILL the process right after the checkpoint of step N is fully saved.

usage: python finetune_kill_worker.py N FINETUNE_ARGS...
"""

import os
import signal
import sys

from transformers import TrainerCallback

import finetune


class KillAfterSave(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:  # on_save runs after the checkpoint folder is complete
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(finetune.main(sys.argv[2:], callbacks=[KillAfterSave(int(sys.argv[1]))]))
