"""Compatibility path: classification's evaluation lives in :mod:`repvit.classification.evaluate`.

``repvit.train.evaluate`` is also the name of the function :func:`repvit.classification.evaluate.evaluate`, and
importing this submodule makes the package attribute point here; so this module can be called like that function,
whichever was imported first.
"""

import sys
import types

from repvit.classification.evaluate import checkpoint_img_size, evaluate, evaluate_checkpoint

__all__ = ["evaluate", "evaluate_checkpoint", "checkpoint_img_size"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
