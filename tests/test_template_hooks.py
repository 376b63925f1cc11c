"""The training template's hooks, each shown with a toy plugin on a tiny stream."""
import pytest
import torch
from avalanche.core import SupervisedPlugin

from benchmarks import models, streams
from methods import MethodContext
from strategies.fit import fit
from strategies.losses import masked_bce
from strategies.memory import LabelMemory, MemoryPlugin

STREAM = "digits:B0-C2?train=200&test=100"
TRAIN = dict(epochs=1, optimizer="adam", lr=1e-2, weight_decay=0.0, batch_size=50,
             eval_batch_size=100, milestones=[], num_workers=0, memory=5,
             memory_mode="per_class", selection="random", amp="off", channels_last=False,
             reset_optimizer=True, memory_labels="own", replay_batch="concat")


@pytest.fixture
def ctx():
    torch.manual_seed(0)
    benchmark, info = streams.build(STREAM)
    model = models.build("smallcnn", info.num_classes, in_channels=1)
    return MethodContext(model, info, {}, dict(TRAIN), benchmark, torch.device("cpu"))


def test_after_forward_can_rewrite_targets_and_mask(ctx):
    class ForgetAllLabels(SupervisedPlugin):
        def after_forward(self, strategy, **kwargs):
            strategy.mbatch[2] = torch.zeros_like(strategy.mb_mask)

    before = [p.detach().clone() for p in ctx.model.parameters()]
    ctx.template(plugins=[ForgetAllLabels()]).train(ctx.benchmark.train_stream[0])
    # with every entry unlabelled the loss is 0 and Adam moves nothing
    assert all(torch.equal(a, b) for a, b in zip(before, ctx.model.parameters()))


def test_after_backward_can_rewrite_classifier_gradient_rows(ctx):
    class FreezeRowZero(SupervisedPlugin):
        def after_backward(self, strategy, **kwargs):
            strategy.model.head.weight.grad[0] = 0

    row0, row1 = ctx.model.head.weight[0].clone(), ctx.model.head.weight[1].clone()
    ctx.template(plugins=[FreezeRowZero()]).train(ctx.benchmark.train_stream[0])
    assert torch.equal(ctx.model.head.weight[0], row0)
    assert not torch.equal(ctx.model.head.weight[1], row1)


def test_previous_model_is_a_frozen_snapshot_and_its_outputs_are_on_the_batch(ctx):
    seen = {}

    class Probe(SupervisedPlugin):
        needs_previous_model = True

        def before_training_exp(self, strategy, **kwargs):
            if strategy.session == 1:
                seen["same_weights"] = all(torch.equal(a, b) for a, b in zip(
                    strategy.prev_model.parameters(), strategy.model.parameters()))

        def before_backward(self, strategy, **kwargs):
            seen.setdefault(strategy.session, strategy.prev_output)
            if strategy.session == 1:
                seen["expected"] = strategy.prev_model(strategy.mb_x)
                seen["got"] = strategy.prev_output

    strategy = ctx.template(plugins=[Probe()])
    for exp in list(ctx.benchmark.train_stream)[:2]:
        strategy.train(exp)
    assert seen[0] is None and seen["same_weights"]
    assert torch.allclose(seen["expected"], seen["got"])
    assert not strategy.prev_model.training
    assert not any(p.requires_grad for p in strategy.prev_model.parameters())


def test_class_counts_include_memory_and_original_counts_are_kept(ctx):
    counts = {}

    class Probe(SupervisedPlugin):
        def before_training_exp(self, strategy, **kwargs):
            counts[strategy.session] = strategy.class_counts.clone()
            counts["data", strategy.session] = len(strategy.adapted_dataset)
            counts["memory", strategy.session] = len(memory.memory.buffer)

    memory = MemoryPlugin(LabelMemory(5, "per_class", "random"))
    strategy = ctx.template(plugins=[memory, Probe()])
    for exp in list(ctx.benchmark.train_stream)[:2]:
        strategy.train(exp)
    session1 = ctx.benchmark.train_stream[1].dataset
    own = (session1.targets * session1.mask).sum(0)
    assert torch.equal(counts[1][2:4], own[2:4])
    assert 0 < counts[1][0] <= 5 and 0 < counts[1][1] <= 5  # old classes: memory only
    assert counts["memory", 0] == 0 and 5 <= counts["memory", 1] <= 10
    assert counts["data", 1] == len(session1) + counts["memory", 1]
    assert strategy.info.class_counts[0] > 5


def test_fit_trains_a_model_on_a_dataset_with_a_loss(ctx):
    data = ctx.benchmark.train_stream[0].dataset
    opt = torch.optim.Adam(ctx.model.parameters(), lr=1e-2)
    losses = fit(ctx.model, data, masked_bce, epochs=3, batch_size=50, optimizer=opt)
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_head_rows_of_new_classes_start_their_session_as_initialised(ctx):
    """Weight decay and momentum move every row during session 0; the rows of session 1's
    classes are back at their initial values (and have no momentum) when session 1 starts."""
    ctx.train.update(optimizer="sgd", lr=0.1, weight_decay=0.5, reset_optimizer=False)
    new = slice(*[ctx.info.sessions[1][0], ctx.info.sessions[1][-1] + 1])
    initial = ctx.model.head.weight[new].clone(), ctx.model.head.bias[new].clone()
    seen = {}

    class Probe(SupervisedPlugin):
        def before_training_exp(self, strategy, **kwargs):
            head = strategy.model.head
            momentum = strategy.optimizer.state.get(head.weight, {}).get("momentum_buffer")
            seen[strategy.session] = (head.weight[new].clone(), head.bias[new].clone(),
                                      None if momentum is None else momentum[new].clone())

        def after_training_exp(self, strategy, **kwargs):
            seen["end", strategy.session] = strategy.model.head.weight[new].clone()

    strategy = ctx.template(plugins=[Probe()])
    for exp in list(ctx.benchmark.train_stream)[:2]:
        strategy.train(exp)
    assert not torch.allclose(seen["end", 0], initial[0])  # decayed while unseen
    weight, bias, momentum = seen[1]
    assert torch.equal(weight, initial[0]) and torch.equal(bias, initial[1])
    assert momentum is not None and not momentum.any()
    assert not torch.equal(seen["end", 1], initial[0])  # and trained in their session
