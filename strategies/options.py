"""The values the mechanisms' string options accept, without torch, so that a method's
declaration can be checked before torch is imported."""

NEGATIVES = ("labelled", "seen", "session")  # strategies/losses.py: which entries are negatives
LAMBDA_MODES = ("fixed", "adaptive")  # strategies/rebll.py
OR_MODES = ("online", "end_of_session", "off")
OR_SCOPES = ("memory", "all")
OR_LABELS = ("hard", "soft")
MEMORY_LABELS = ("own", "forward")  # strategies/memory.py
LOSSES = ("ce", "bsce")  # a method's classification loss: plain or balanced softmax (balanced.py)
