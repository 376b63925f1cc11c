"""The values the mechanisms' string options accept, without torch, so that a method's
declaration can be checked before torch is imported."""

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
LOSSES = ("ce", "bsce")  # a method's classification loss: plain or balanced softmax (balanced.py)
