"""Backbones: the CIFAR ResNet-32's initialisation, timm backbones, local weights."""
import pytest
import torch
from torch import nn

from benchmarks import models, streams
from methods import MethodContext

TRAIN = dict(epochs=1, optimizer="sgd", lr=0.01, weight_decay=5e-4, batch_size=40,
             eval_batch_size=40, milestones=[], num_workers=0, memory=0,
             memory_mode="per_class", selection="random", amp="off", channels_last=False,
             reset_optimizer=True, memory_labels="own", replay_batch="concat")


def test_resnet32_convolutions_are_kaiming_normal_fan_out():
    torch.manual_seed(0)
    net = models.build("resnet32", 10)
    convs = [m for m in net.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 30 + 2  # stem, 15 blocks x 2, two 1x1 shortcuts
    conv = convs[-3]  # a 3x3 convolution 64 -> 64 of the last stage
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)


def test_a_timm_tresnet_builds_without_inplace_abn_and_trains_one_step():
    """timm:tresnet_m from random init (nothing downloaded) on a tiny 3-channel stream."""
    benchmark, info = streams.build("synthetic:B0-C5?classes=10&train=40&test=20&size=32")
    torch.manual_seed(0)
    model = models.build("timm:tresnet_m", info.num_classes)
    assert type(model.backbone).__name__ == "TResNet" and model.head.in_features == 2048
    ctx = MethodContext(model, info, {}, dict(TRAIN), benchmark, torch.device("cpu"))
    before = [p.detach().clone() for p in model.backbone.parameters()]
    ctx.template().train(benchmark.train_stream[0])  # 40 images, batch 40: one step
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_timm_weights_load_from_a_local_checkpoint_without_the_classifier(tmp_path):
    torch.manual_seed(0)
    import timm
    source = timm.create_model("resnet10t", num_classes=7)
    path = tmp_path / "w.pth"
    torch.save({"model": source.state_dict()}, path)  # wrapped, with its own classifier
    net = models.build("timm:resnet10t", 3, pretrained=str(path))
    for name, value in net.backbone.state_dict().items():
        assert torch.equal(value, source.state_dict()[name])
    assert net.head.out_features == 3
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="do not fit backbone 'timm:resnet10t'") as err:
        models.build("timm:resnet10t", 3, pretrained=str(tmp_path / "other.pth"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name, pretrained, message", [
    ("timm:no_such_net", None, "unknown timm model 'no_such_net'"),
    ("resnet34", None, "unknown backbone 'resnet34'.*timm:<model>"),
    ("timm:resnet10t", "/nonexistent/w.pth", "'/nonexistent/w.pth' not found"),
])
def test_backbone_errors_are_one_line(name, pretrained, message):
    with pytest.raises(ValueError, match=message) as err:
        models.build(name, 3, pretrained=pretrained)
    assert "\n" not in str(err.value)
