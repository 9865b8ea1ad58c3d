"""Run by test_ddp under torch.distributed.run: a tiny training with Mixup and 2 loader workers per rank.

``interrupt`` sends rank 1 a SIGINT in the middle of the second epoch (the stop is agreed over all ranks);
``resume`` continues from ``last.pt``; ``full`` runs uninterrupted.
"""

import os
import signal
import sys
from pathlib import Path

from repvit.classification import task as clsmod  # patched where the task looks build_criterion up
from repvit.classification import train
from tests.classification._tiny import tiny


def main() -> None:
    out, mode = Path(sys.argv[1]), sys.argv[2]
    if mode == "interrupt" and os.environ["RANK"] == "1":
        real, calls = clsmod.build_criterion, {"n": 0}

        def patched(cfg, n, teacher):
            crit, mix = real(cfg, n, teacher)

            def crit_sigint(x, o, y):
                calls["n"] += 1
                if calls["n"] == 7:  # batch 3 of 4 in the second epoch
                    os.kill(os.getpid(), signal.SIGINT)
                return crit(x, o, y)

            return crit_sigint, mix

        clsmod.build_criterion = patched
    train(tiny(out, epochs=2, batch_size=16, train_subset=128, val_subset=64, workers=2, mixup=0.8, cutmix=1.0,
               smoothing=0.1, drop_path=0.05, resume="auto" if mode == "resume" else None))


if __name__ == "__main__":  # the loader's forkserver workers import this file again: only the launch trains
    main()
