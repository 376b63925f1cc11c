"""Method plugins for the runner tests, loaded with ``--plugin tests/toy_methods.py``."""
from methods import register


@register("toy", label_modes={"multi", "single"},
          defaults={"alpha": 1.0, "steps": 2, "mode": "ok"},
          ranges={"alpha": (None, None), "steps": (None, None)})
def build_toy(ctx):
    """A toy method for the fake cell (tests/fake_cell.py); the real cell cannot build it."""
    raise NotImplementedError("toy runs only in the fake cell")


@register("toy_single", label_modes={"single"}, defaults={})
def build_toy_single(ctx):
    """A toy single-label-only method."""
    raise NotImplementedError("toy_single runs only in the fake cell")


@register("explode", label_modes={"multi", "single"}, defaults={})
def build_explode(ctx):
    """A method whose build raises: its cells fail."""
    raise RuntimeError("explode cannot be built")
