"""A method's strategy on a tiny embedded stream, for tests that step it session by session."""
import torch

import methods
from benchmarks import models, streams
from benchmarks.cell import resolve_train

SINGLE = "digits-lt:B4-C3?n_max=60&test_per_class=20"
MULTI = "digits:B4-C3?train=300&test=150"
STREAMS = {"single": SINGLE, "multi": MULTI}


def strategy(method, stream=SINGLE, hparams=None, plugins=(), **train):
    """``(strategy, benchmark, info)``: ``method`` with ``hparams`` on ``stream`` (a smallcnn,
    torch seeded 0, the recipe with ``train``'s overrides, one epoch unless told), carrying
    ``plugins``; the model is ``strategy.model``."""
    torch.manual_seed(0)
    benchmark, info = streams.build(stream)
    model = models.build("smallcnn", info.num_classes, in_channels=1)
    ctx = methods.MethodContext(model, info, methods.resolve_hparams(method, hparams or {}),
                                resolve_train(info.recipe, {"epochs": 1, **train}), benchmark,
                                torch.device("cpu"), list(plugins))
    return methods.get(method).build(ctx), benchmark, info
