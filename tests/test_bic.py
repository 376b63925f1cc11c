"""BiC: the bias layer's fit against a transcription of the long-tailed CIL code's stage 2
(xialeiliu/Long-Tailed-CIL src/approach/bic.py), the layer by hand, the balanced held-out
set, and the model's logits through the layers."""
from types import SimpleNamespace

import pytest
import torch
from avalanche.core import SupervisedPlugin

import tiny
from strategies.bias_correction import BiasCorrectedHead, BiasCorrection, corrected, fit_bias
from strategies.memory import LabelMemory


# --- transcribed from xialeiliu/Long-Tailed-CIL src/approach/bic.py ------------------------
class BiasLayer(torch.nn.Module):
    def __init__(self):
        super(BiasLayer, self).__init__()
        self.alpha = torch.nn.Parameter(torch.ones(1, requires_grad=False))
        self.beta = torch.nn.Parameter(torch.zeros(1, requires_grad=False))

    def forward(self, x):
        return self.alpha * x + self.beta


def reference_stage2(outputs_per_task, targets, bias_layers, t, lr, epochs, batches):
    """Stage 2 of ``train_loop`` on fixed model outputs; ``batches`` gives each epoch's
    row order (the loader's shuffle)."""
    def bias_forward(outputs):
        return [bias_layers[m](outputs[m]) for m in range(len(outputs))]

    bias_layers[t].alpha.requires_grad = True
    bias_layers[t].beta.requires_grad = True
    bic_optimizer = torch.optim.SGD(bias_layers[t].parameters(), lr=lr, momentum=0.9)
    for e in range(epochs):
        for rows in batches[e]:
            outputs = [o[rows] for o in outputs_per_task]
            with torch.no_grad():
                old_cls_outs = bias_forward(outputs[:t])
            new_cls_outs = bias_layers[t](outputs[t])
            pred_all_classes = torch.cat([torch.cat(old_cls_outs, dim=1), new_cls_outs], dim=1)
            loss = torch.nn.functional.cross_entropy(pred_all_classes, targets[rows])
            loss += 0.1 * ((bias_layers[t].beta[0] ** 2) / 2)
            bic_optimizer.zero_grad()
            loss.backward()
            bic_optimizer.step()
    return bias_layers[t].alpha.item(), bias_layers[t].beta.item()
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [64, 7])
def test_bias_fit_matches_the_reference_stage2(batch_size):
    torch.manual_seed(0)
    tasks = [3, 2, 2]  # session 2 is being corrected; sessions 0 and 1 have fitted layers
    raw = [torch.randn(30, k) * 2 for k in tasks]
    raw[2] = raw[2] + 1.5  # new classes biased up, as after imbalanced training
    targets = torch.randint(0, 7, (30,))
    layers = [BiasLayer(), BiasLayer(), BiasLayer()]
    with torch.no_grad():
        layers[1].alpha.fill_(0.8)
        layers[1].beta.fill_(-0.4)
    epochs, lr = 30, 0.1
    order = torch.Generator().manual_seed(5)
    batches = [torch.randperm(30, generator=order).split(batch_size) for _ in range(epochs)]
    want = reference_stage2(raw, targets, layers, 2, lr, epochs, batches)
    # the suite: old columns already through their fixed layers (the head applies them)
    logits = torch.cat([raw[0], 0.8 * raw[1] - 0.4, raw[2]], dim=1)
    got = fit_bias(logits, targets, None, 5, epochs=epochs, lr=lr, batch_size=batch_size,
                   generator=torch.Generator().manual_seed(5))
    assert got == pytest.approx(want, abs=1e-5)
    assert abs(want[0] - 1) > 1e-2 and abs(want[1]) > 1e-2  # the fit moved


def test_layer_leaves_old_logits_unchanged_and_maps_new_ones_by_hand():
    logits = torch.tensor([[1.0, -2.0, 3.0, 4.0]])
    out = corrected(logits, 2, torch.tensor(0.5), torch.tensor(-1.0))
    assert out.tolist() == [[1.0, -2.0, 0.5, 1.0]]
    linear = torch.nn.Linear(3, 5)
    head = BiasCorrectedHead(linear)
    x = torch.randn(4, 3)
    assert torch.equal(head(x), linear(x))  # identity until fitted
    head.alpha[2:4], head.beta[2:4] = 0.5, -1.0
    assert torch.equal(head(x)[:, :2], linear(x)[:, :2])
    assert torch.allclose(head(x)[:, 2:4], 0.5 * linear(x)[:, 2:4] - 1.0)
    assert [n for n, _ in head.named_parameters()] == ["linear.weight", "linear.bias"]


def test_a_biased_new_block_is_pulled_down():
    # new-class logits 3 higher than the old ones: the fitted layer lowers them
    torch.manual_seed(0)
    targets = torch.arange(4).repeat(10)
    logits = torch.randn(40, 4) + 4 * torch.nn.functional.one_hot(targets, 4)
    logits[:, 2:] += 3.0
    alpha, beta = fit_bias(logits, targets, None, 2, epochs=100, lr=0.1, batch_size=40,
                           generator=torch.Generator())
    fixed = corrected(logits, 2, torch.tensor(alpha), torch.tensor(beta))
    assert (fixed.argmax(1) == targets).float().mean() > (logits.argmax(1) == targets).float().mean()
    assert beta < 0


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_held_out_set_is_balanced_and_never_trained_on(mode):
    trained = []

    class Probe(SupervisedPlugin):
        def before_training_exp(self, strategy, **kwargs):
            trained.append(strategy.adapted_dataset.index)

    strategy, benchmark, info = tiny.strategy("bic", tiny.STREAMS[mode],
                                              {"bias_epochs": 5, "bias_layers": "all"},
                                              [Probe()], memory=10, selection="random")
    model = strategy.model
    bic = next(p for p in strategy.plugins if isinstance(p, BiasCorrection))
    memory = bic.memory
    for t, exp in enumerate(list(benchmark.train_stream)):
        strategy.train(exp)
        assert memory.max_size == 9  # 10 per class, 1 held out
        held = torch.cat([rows.index for rows in bic.per_class.values()])
        assert sorted(bic.per_class) == list(range(info.seen_after(t)))
        assert all(len(rows) == 1 for rows in bic.per_class.values())  # ceil(0.1 * 10)
        assert not torch.isin(memory.buffer.index, held).any()
        assert not torch.isin(trained[t], held).any()
        if t:
            notes = strategy.notes
            assert notes["bic_val"] >= 1 and notes["bic_fit_s"] >= 0
            n_old, n = strategy.n_old, strategy.n_seen
            assert model.head.alpha[n_old:n].unique().item() == pytest.approx(notes["bic_alpha"])
            assert model.head.beta[n_old:n].unique().item() == pytest.approx(notes["bic_beta"])
            assert (model.head.alpha[n:] == 1).all() and (model.head.beta[n:] == 0).all()
    assert len(model.head.alpha[4:].unique()) == 2  # one fitted layer per later session


def test_memory_excludes_given_indices():
    memory = LabelMemory(3, selection="random")
    memory.excluded = torch.tensor([0, 1])
    data = SimpleNamespace(targets=torch.tensor([0, 0, 0, 0]), index=torch.arange(4))
    rows = torch.nonzero(data.targets == 0).flatten()
    assert rows[~torch.isin(data.index[rows], memory.excluded)].tolist() == [2, 3]


def test_total_budget_gives_the_validation_share_of_each_class_quota():
    # total 100 over 7 seen classes: quota 14, ceil(0.1 * 14) = 2 held out per class, so the
    # training memory keeps 12 per class (FACIL's max_num_exemplars = 12 * 7)
    memory = LabelMemory(100, mode="total", selection="random")
    bic = BiasCorrection(memory, share=0.1)
    assert bic.val_quota(7) == 2
    bic.before_train_dataset_adaptation(SimpleNamespace(n_seen=7))
    assert memory.max_size == 84 and memory.quota(7) == 12
    bic.before_train_dataset_adaptation(SimpleNamespace(n_seen=10))  # quota 10: 1 held out
    assert memory.max_size == 90 and memory.quota(10) == 9


def _three_sessions(layers):
    """BiC with ``bias_layers=layers`` over the tiny single-label stream's three sessions:
    the head's (alpha, beta) after each session, the current and previous models' alpha
    while session 2 trains, and the last model's test logits."""
    seen = {}

    class Probe(SupervisedPlugin):
        def before_training_iteration(self, strategy, **kwargs):
            if strategy.session == 2 and "train" not in seen:
                seen["train"] = strategy.model.head.alpha.clone()
                seen["prev"] = strategy.prev_model.head.alpha.clone()

    strategy, benchmark, info = tiny.strategy("bic", tiny.SINGLE,
                                              {"bias_epochs": 20, "bias_layers": layers},
                                              [Probe()], memory=10, selection="random")
    head = strategy.model.head
    after = []
    for exp in benchmark.train_stream:
        strategy.train(exp)
        after.append((head.alpha.clone(), head.beta.clone()))
    x = torch.stack([benchmark.test_stream[2].dataset[i][0] for i in range(40)])
    strategy.model.eval()
    with torch.no_grad():
        logits = strategy.model(x)
    return after, seen, logits


def test_latest_applies_only_the_newest_layer_and_all_keeps_every_layer():
    # sessions: classes 0-3, 4-6, 7-9; a layer is fitted after sessions 1 and 2
    latest, seen_latest, logits_latest = _three_sessions("latest")
    every, seen_all, logits_all = _three_sessions("all")
    # up to the first fit both settings train the same model and fit the same layer
    assert all(torch.equal(a, b) for a, b in zip(latest[1], every[1]))
    (alpha1, beta1) = every[1]
    assert alpha1[4] != 1 and beta1[4] != 0  # the layer of session 1 moved
    # all: session 1's layer stays applied, in training and after session 2's fit
    assert torch.equal(seen_all["train"][4:7], alpha1[4:7])
    assert torch.equal(every[2][0][4:7], alpha1[4:7]) and torch.equal(every[2][1][4:7],
                                                                        beta1[4:7])
    # latest: the model trains on raw logits, its distillation target carries layer 1 ...
    assert (seen_latest["train"] == 1).all()
    assert torch.equal(seen_latest["prev"][4:7], alpha1[4:7])
    # ... and after session 2's fit only its layer applies: old classes' logits are raw
    alpha, beta = latest[2]
    assert (alpha[:7] == 1).all() and (beta[:7] == 0).all()
    assert (alpha[7:] != 1).all()
    assert not torch.allclose(logits_latest, logits_all)
