"""The values the mechanisms' string options accept, without torch, so that a method's
declaration can be checked before torch is imported."""
from . import keyvalue

NEGATIVES = ("labelled", "seen", "session")  # strategies/losses.py: which entries are negatives
LAMBDA_MODES = ("fixed", "adaptive")  # strategies/rebll.py
KD_WEIGHTS = ("symmetric", "negative", "positive")  # strategies/rebll.py: AKD's decay
OR_MODES = ("online", "end_of_session", "off")
OR_SCOPES = ("memory", "all")
OR_LABELS = ("hard", "soft")
MEMORY_LABELS = ("own", "forward")  # strategies/memory.py
FOCAL_GRADS = ("detached", "full")  # strategies/losses.py: ASL's focusing weight in the graph
TEACHER_MODES = ("train", "eval")  # strategies/psd.py: the teachers' mode while distilling
BSCE_PRIORS = ("supervised", "session", "stream")  # strategies/bsce.py: the prior's counts
BSCE_ABSENT = ("last", "exclude")  # strategies/bsce.py: classes absent from the session
KRT_RESTORE = ("dynamic", "fixed", "off")  # strategies/krt.py: DPL's threshold, or no DPL
KRT_FREEZE = ("tokens_heads", "tokens", "heads", "none")  # strategies/krt.py: old parts frozen
REDUCTIONS = ("sum", "mean")  # a classification loss over the batch's entries (KRT: sum)
BIAS_LAYERS = ("latest", "all")  # strategies/bias_correction.py: BiC's layers applied
LOSSES = ("ce", "bsce")  # a method's classification loss: plain or balanced softmax (balanced.py)

# strategies/memory.py and strategies/selection.py: how the replay memory chooses samples.
MEMORY_SELECTIONS = ("herding", "random", "prs", "ocdm")
OCDM_DIVERGENCES = ("kl_target", "kl_memory")  # KL(target || memory), KL(memory || target)
# Options of a selection, written ``name?key=value&...`` (e.g. ``prs?rho=0.5``):
# key -> (default, low, high) for numbers (closed range, None: unbounded), or
# key -> (default, choices) for strings. The type is the default's.
SELECTION_OPTIONS = {
    # PRS's power of allocation (official code: q_poa; 0 in its SVHN config, -0.03 / 0.02 in
    # its COCO / NUS-WIDE configs): class i's share of the memory is n_i^rho / sum_j n_j^rho
    "prs": {"rho": (0.0, -1.0, 1.0)},
    # OCDM (a reconstruction, every unknown an option): the target distribution's power
    # (PRS's partition), incoming samples per greedy update (0: the whole session at once),
    # the divergence minimised and the smoothing of empty classes in the memory's distribution
    "ocdm": {"rho": (0.0, -1.0, 1.0), "batch": (10, 0, None),
             "divergence": ("kl_target", OCDM_DIVERGENCES), "eps": (1e-6, 1e-12, 1.0)},
}


def _selection_error(text: str, detail: str) -> ValueError:
    return ValueError(f"memory selection {text!r}: {detail}")


def _selection_value(text: str, name: str, key: str, raw: str):
    spec = SELECTION_OPTIONS[name][key]
    default = spec[0]
    choices, (low, high) = (spec[1], (None, None)) if isinstance(default, str) else \
        (None, spec[1:])
    try:
        return keyvalue.typed(raw, default, choices, low, high)
    except keyvalue.Refused as exc:
        detail = {"choice": f"not in {'|'.join(exc.choices)}",
                  "type": "must be a finite " + ("integer" if exc.kind is int else "number"),
                  "range": f"is out of range; accepted: {exc.accepted}"}[exc.problem]
        raise _selection_error(text, f"option {key}={raw} {detail}") from None


def parse_selection(text: str) -> tuple[str, dict]:
    """``"prs?rho=0.5"`` as ``("prs", {"rho": 0.5})``: the selection's name and all its
    options, defaults filled in. Raises ValueError (one line) for an unknown name or option,
    an option given twice, or a value of the wrong type or out of its range."""
    name, query = keyvalue.split(str(text).strip())
    if name not in MEMORY_SELECTIONS:
        raise _selection_error(text, f"unknown selection {name!r}; accepted: "
                                     + ", ".join(MEMORY_SELECTIONS))
    accepted = SELECTION_OPTIONS.get(name, {})
    known = ", ".join(f"{k}={v[0]!r}" for k, v in accepted.items()) or "none"
    try:
        given = keyvalue.pairs(query)
    except keyvalue.PairError as exc:
        raise _selection_error(text, f"option {exc.key} given twice" if exc.key else
                               f"unknown option {exc.pair!r} for {name}; accepted: {known}") \
            from None
    unknown = [f"{k}={v}" for k, v in given.items() if k not in accepted]
    if unknown:
        raise _selection_error(text, f"unknown option {unknown[0]!r} for {name}; accepted: "
                                     f"{known}")
    options = {key: spec[0] for key, spec in accepted.items()}
    options.update({key: _selection_value(text, name, key, raw) for key, raw in given.items()})
    return name, options


def canonical_selection(text: str) -> str:
    """The one name of a selection (options sorted, defaults dropped): ``prs?rho=0`` is
    ``prs``, so that one memory is one cell id however it was written."""
    name, options = parse_selection(text)
    defaults = {key: spec[0] for key, spec in SELECTION_OPTIONS.get(name, {}).items()}
    extra = [f"{key}={options[key]}" for key in sorted(options) if options[key] != defaults[key]]
    return name + ("?" + "&".join(extra) if extra else "")


def describe_selection(text: str) -> str:
    """A selection with every option written out, e.g. ``prs?rho=0.0`` (for records)."""
    name, options = parse_selection(text)
    return name + ("?" + "&".join(f"{k}={v}" for k, v in sorted(options.items()))
                   if options else "")
