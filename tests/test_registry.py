"""The method registry: hyperparameters, label modes, and the three ways to find a method."""
import subprocess
import sys
import re
import textwrap

import pytest

import methods
from benchmarks.cell import run_cell
from benchmarks.runner.spec import RunSpec
from methods import MethodError

METHOD_FILE = """
from methods import register

@register("{name}", label_modes={{"multi"}}, defaults={{"scale": 1.0}},
          ranges={{"scale": (None, None)}})
def build(ctx):
    \"\"\"A finetune whose loss is scaled.\"\"\"
    return ctx.template(criterion=lambda z, y, m: ctx.hparams["scale"] *
                        __import__("strategies.losses").losses.masked_bce(z, y, m))
"""


def test_builtin_methods_are_discovered_with_their_label_modes():
    found = methods.discover()
    assert {"finetune", "joint", "replay", "lwf"} <= set(found)
    assert found["lwf"].defaults == {"alpha": 1.0, "temperature": 2.0}
    assert found["replay"].label_modes == {"multi", "single"}


def test_unknown_hyperparameter_is_rejected_with_the_accepted_keys():
    with pytest.raises(MethodError, match=r"unknown hyperparameter\(s\) beta for method "
                                          r"'lwf'; accepted: alpha=1.0, temperature=2.0"):
        methods.resolve_hparams("lwf", {"beta": 1})


def test_values_are_coerced_from_cli_strings_and_wrong_types_rejected():
    assert methods.resolve_hparams("lwf", {"alpha": "2"}) == {"alpha": 2.0, "temperature": 2.0}
    assert methods.resolve_hparams("lwf", {"alpha": 3}) == {"alpha": 3.0, "temperature": 2.0}
    with pytest.raises(MethodError, match="lwf.alpha expects float"):
        methods.resolve_hparams("lwf", {"alpha": "lots"})
    with pytest.raises(MethodError, match="unknown method 'nope'"):
        methods.get("nope")


def test_a_method_on_a_stream_of_another_label_mode_is_a_clear_error(tmp_path):
    plugin = tmp_path / "multi_only.py"
    plugin.write_text(METHOD_FILE.format(name="multionly"))
    methods.load_plugin(str(plugin))
    with pytest.raises(MethodError, match="supports multi-label streams, not single-label"):
        methods.check_label_mode("multionly", "single")


def test_a_plugin_file_outside_the_repo_is_found_and_runs(tmp_path):
    plugin = tmp_path / "scaled.py"
    plugin.write_text(METHOD_FILE.format(name="scaledft"))
    spec = RunSpec("scaledft", "digits:B0-C2?train=100&test=50", 0, {"scale": 0.5},
                   {"epochs": 1}, plugins=(str(plugin),))
    record = run_cell(spec)
    assert record["status"] == "done", record["traceback"]
    assert record["hparams"] == {"scale": 0.5}
    with pytest.raises(MethodError, match="is not a Python file"):
        methods.load_plugin(str(tmp_path / "missing.py"))


def test_an_installed_package_registers_through_the_entry_point(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "epmethods.py").write_text(METHOD_FILE.format(name="fromentrypoint"))
    (pkg / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "epmethods"
        version = "0.1"
        [tool.setuptools]
        py-modules = ["epmethods"]
        [project.entry-points."imbacil.methods"]
        fromentrypoint = "epmethods"
        """))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(site), str(pkg)], check=True)
    monkeypatch.syspath_prepend(str(site))
    assert "fromentrypoint" in methods.discover()
    assert methods.get("fromentrypoint").defaults == {"scale": 1.0}


def _declare(**kwargs):
    """Register a throwaway method with ``kwargs`` as its declaration."""
    methods.register("declared", label_modes={"multi"}, **kwargs)(lambda ctx: None)


@pytest.mark.parametrize("kwargs, message", [
    ({"defaults": {"w": 1.0}}, "numeric hyperparameter(s) w need a range"),
    ({"defaults": {"w": 1.0}, "ranges": {"w": (0, 2)}, "space": {"v": ("float", 0, 1)}},
     "space name(s) v, which are not hyperparameters"),
    ({"defaults": {"w": 1.0}, "ranges": {"w": (0, 2)}, "space": {"w": ("float", 2, 1)}},
     "space of declared.w: low 2 > high 1"),
    ({"defaults": {"w": 1.0}, "ranges": {"w": (0, 2)}, "space": {"w": ("log", 0, 1)}},
     "a log range must be above 0"),
    ({"defaults": {"w": 1.0}, "ranges": {"w": (0, 2)}, "space": {"w": ("log", 0.1, 5)}},
     "space of declared.w is out of range; accepted: from 0 to 2"),
    ({"defaults": {"w": 1.0}, "ranges": {"w": (0, 2)}, "space": {"w": ("grid", 0, 1)}},
     "expected (float|log|int, low, high) or (choice, values)"),
    ({"defaults": {"w": 3.0}, "ranges": {"w": (0, 2)}}, "declared.w=3.0 is out of range"),
    ({"defaults": {"kd": "a"}, "choices": {"kd": ("a", "b")}, "space": {"kd": ("choice", ("c",))}},
     "space of declared.kd is not accepted; accepted: a, b"),
])
def test_a_declaration_that_contradicts_itself_is_refused(kwargs, message):
    with pytest.raises(MethodError, match=re.escape(message)):
        _declare(**kwargs)


def test_every_builtin_method_declares_a_range_for_each_number_and_a_space_inside_it():
    for name, method in methods.discover().items():
        for key, value in method.defaults.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert key in method.ranges, (name, key)
        for key, entry in method.space.items():
            assert key in method.defaults, (name, key)


def test_values_outside_a_range_or_not_finite_are_refused():
    with pytest.raises(MethodError, match=r"rebll.tau=1.5 is out of range; accepted: from 0.0 "
                                          r"to 1.0"):
        methods.resolve_hparams("rebll", {"tau": "1.5"})
    with pytest.raises(MethodError, match="expected a finite number"):
        methods.resolve_hparams("lwf", {"alpha": ".inf"})
    assert methods.resolve_hparams("lwf", {"alpha": "1e-3"})["alpha"] == 0.001
    with pytest.raises(MethodError, match="psd.teacher_epochs=0 is out of range"):
        methods.resolve_hparams("psd", {"teacher_epochs": 0})
