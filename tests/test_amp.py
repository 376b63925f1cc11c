"""Mixed precision (``amp``) and channels-last training: what the model runs in, and what
plugins see (float32 logits, unscaled gradients, channels-last batches)."""
import pytest
import torch
from avalanche.core import SupervisedPlugin

from benchmarks import models, streams
from methods import MethodContext

STREAM = "synthetic:B0-C5?classes=10&size=16&train=100&test=50"  # 3-channel images
TRAIN = dict(epochs=1, optimizer="sgd", lr=0.1, weight_decay=0.0, batch_size=40,
             eval_batch_size=100, milestones=[], num_workers=0, amp="off", channels_last=False,
             reset_optimizer=True, memory_labels="own", replay_batch="concat")


class Probe(SupervisedPlugin):
    """Records the initial head weights and, per training iteration, the logits' dtypes,
    the batch and the head gradient."""

    needs_previous_model = True

    def __init__(self):
        super().__init__()
        self.outputs, self.prev_outputs, self.batches, self.grads = [], [], [], []
        self.initial_head = None

    def before_training(self, strategy, **kwargs):
        if self.initial_head is None:
            self.initial_head = strategy.model.head.weight.detach().clone()

    def after_forward(self, strategy, **kwargs):
        self.outputs.append(strategy.mb_output.dtype)
        if strategy.prev_output is not None:
            self.prev_outputs.append(strategy.prev_output.dtype)
        self.batches.append(strategy.mb_x)

    def after_backward(self, strategy, **kwargs):
        self.grads.append(strategy.model.head.weight.grad.clone())


def train(sessions=1, **options):
    """Train a fresh seeded small CNN on the first ``sessions`` sessions; return the
    strategy, the probe and the dtypes the model's head computed in."""
    torch.manual_seed(0)
    benchmark, info = streams.build(STREAM)
    model = models.build("smallcnn", info.num_classes, in_channels=3)
    head_dtypes = []
    model.head.register_forward_hook(lambda module, args, out: head_dtypes.append(out.dtype))
    ctx = MethodContext(model, info, {}, {**TRAIN, **options}, benchmark, torch.device("cpu"))
    probe = Probe()
    strategy = ctx.template(plugins=[probe])
    for exp in list(benchmark.train_stream)[:sessions]:
        strategy.train(exp)
    return strategy, probe, set(head_dtypes)


@pytest.mark.parametrize("amp, head_dtype", [("off", torch.float32), ("bf16", torch.bfloat16)])
def test_the_model_runs_in_the_amp_dtype_and_plugins_see_float32_logits(amp, head_dtype):
    strategy, probe, head_dtypes = train(sessions=2, amp=amp)
    assert head_dtypes == {head_dtype}  # the previous model's forward included
    assert probe.outputs and set(probe.outputs) == {torch.float32}
    assert probe.prev_outputs and set(probe.prev_outputs) == {torch.float32}


def test_fp16_plugins_see_unscaled_gradients_and_the_steps_are_taken():
    strategy, probe, head_dtypes = train(amp="fp16")
    reference, plain, _ = train(amp="off")
    assert head_dtypes == {torch.float16} and strategy.scaler.get_scale() > 1000
    # same first batch and weights: fp16 gradients equal the float32 ones up to rounding,
    # not times the scale
    got, want = probe.grads[0], plain.grads[0]
    tolerance = 0.05 * want.abs().max().item()
    assert torch.allclose(got, want, rtol=0.05, atol=tolerance)
    head, reference_head = strategy.model.head.weight, reference.model.head.weight
    assert not torch.equal(head, probe.initial_head)
    assert torch.allclose(head, reference_head, atol=0.01)


def test_channels_last_converts_the_model_and_every_batch():
    strategy, probe, _ = train(channels_last=True)
    convs = [m.weight for m in strategy.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert probe.batches and all(x.is_contiguous(memory_format=torch.channels_last)
                                 for x in probe.batches)
    _, plain, _ = train()
    assert not any(x.is_contiguous(memory_format=torch.channels_last) for x in plain.batches)


def test_an_unknown_amp_value_names_the_accepted_ones():
    with pytest.raises(ValueError, match="unknown amp 'fp8'; accepted: off, bf16, fp16"):
        train(amp="fp8")


def test_a_cell_trains_with_bf16_and_records_it(cell):
    record = cell("finetune", amp="bf16", channels_last=True)
    assert record["train"]["amp"] == "bf16" and record["train"]["channels_last"] is True
    assert all(len(s["train_loss"]) == 1 for s in record["sessions"])
