"""KRT (Dong et al., "Knowledge Restore and Transfer for Multi-Label Class-Incremental
Learning", ICCV 2023, arXiv:2302.13334; official code witdsl/KRT-MLCIL): the incremental
cross-attention (ICA) model, the token loss and the dynamic pseudo-label (DPL) module.

With t the current session, n_old the classes of sessions before it, n_new its own and
n_seen = n_old + n_new:

- **ICA** (:class:`KRTNet`, the official ``Tresnet_L_ICA.forward``): the backbone's last
  feature map (B, C, H, W) becomes H*W patch tokens, projected to ``embed_dim`` (the
  official 1x1 convolution ``last_proj``, here the same linear map on each token) plus a
  learned position embedding. For each session s <= t, the shared knowledge-transfer (KT)
  token (``cls_token``) is the query of a class-attention block over [KT, KR_s, patches],
  KR_s being session s's knowledge-retention token (``task_tokens[s]``); the block updates
  the query token only (CaiT's class attention: pre-norm attention with a residual, then a
  pre-norm MLP with a residual). Its output e_s goes through session s's head (LayerNorm
  and a linear layer) to the logits of s's classes; the logits of all sessions are
  concatenated in arrival order. Before session t >= 1 trains, the old KR tokens and heads
  are frozen (the official ``freeze_task: [old_task_tokens, old_heads]``); the backbone, the
  projection, the KT token and the block keep training.
- **Token loss** (:func:`token_loss`, ``compute_loss``): ``lambda_tdl * sqrt(n_seen / n_new) *
  mean_b (1 - cos([e'_0 .. e'_{t-1}], [e_0 .. e_{t-1}]))``, the previous model's tokens e'
  and the current model's old-session tokens, each side concatenated into one vector per
  image (the official ``embeddings_similarity``, a cosine embedding loss with target 1:
  LUCIR's less-forget term of strategies/lucir.py, reused).
- **Classification**: the asymmetric loss of strategies/losses.py (gamma_neg 4, gamma_pos 0,
  clip 0.05, focusing weights detached) over every seen class, summed over the batch's
  entries as the official ``AsymmetricLoss`` returns it (:func:`summed`), so that the token
  loss's weight keeps its official scale.
- **DPL** (knowledge restore; :func:`restore_labels`, ``_train_one_epoch``): on every
  training image of session t >= 1 (memory rows included), every old class whose previous
  model's probability exceeds the threshold becomes a positive target (nothing becomes a
  negative; a labelled entry can turn positive too). The threshold is ``thre`` (fixed) or,
  as the official code runs by default (``dynamic`` is True unless a config sets it), found
  at the start of each session by :func:`dynamic_threshold` (``Dynamic_Pseudo_Labal``):
  starting from the previous session's threshold (``thre`` the first time), steps of 0.005
  until the mean number of old-class probabilities above it per training image is within
  0.1 of ``cardinality * n_old / num_classes`` (the official constants: 1.4 / 20 classes on
  VOC, 2.9 / 80 on COCO, i.e. the dataset's labels per image spread evenly over classes).

Departures, each written where it happens: the DPL search reads the previous model's outputs
on the eval transform of the session's data (the official one on the training loader's
augmented images) and, when it does not settle in 100 steps, keeps the threshold it reached
and says so in the session's notes (the official code raises); all tokens and heads are
created with the model (one per session of the stream; the official code adds one at each
session start), and a session's not-yet-active tokens and heads take no part in the forward
pass (their logits read 0, masked out by the template).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import nn

from .lucir import less_forget_loss
from .options import KRT_FREEZE, KRT_RESTORE
from .rebll import probabilities

# The official DPL search: threshold step, tolerance on the mean count, steps at most, and
# the clamps of the threshold (``Dynamic_Pseudo_Labal``).
DPL_STEP, DPL_TOLERANCE, DPL_STEPS, DPL_LOW, DPL_HIGH = 0.005, 0.1, 100, 0.0001, 0.999999


# --- the incremental cross-attention model ---------------------------------------------------

class ClassAttentionBlock(nn.Module):
    """CaiT's class-attention block as the official ``Block`` with ``ClassAttention``: the
    first token of ``x`` (B, N, D) queries all N tokens (multi-head, no q/k/v bias) and only
    it is updated: ``c = x_0 + proj(attn(norm1(x)))``, ``c + mlp(norm2(c))``; returns (B, 1, D)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.num_heads = num_heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.proj = nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        for layer in self.modules():  # official: N(0, 0.01) weights (Tresnet_L_ICA), 0 bias
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.01)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        attended = F.scaled_dot_product_attention(self._heads(self.q(h[:, :1])),
                                                  self._heads(self.k(h)), self._heads(self.v(h)))
        query = x[:, :1] + self.proj(attended.transpose(1, 2).flatten(2))
        return query + self.mlp(self.norm2(query))


class SessionHead(nn.Module):
    """A session's classifier on its token: LayerNorm, then linear (``ContinualClassifier``)."""

    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.linear = nn.Linear(dim, classes)

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(token))


class KRTNet(nn.Module):
    """The ICA model (see the module docstring) on ``trunk``, a module giving the backbone's
    last feature map (B, C, H, W) or tokens (B, N, C) (``CILNet.spatial_trunk()``).

    ``sessions``: the stream's classes per session (one KR token and one head each);
    ``sample``: one input (C_in, H, W) to read the map's channels and size from;
    ``embed_dim`` (None: min(768, C), the official 768 on TResNet-M's 2048 channels),
    ``depth`` (class-attention blocks in a row, each query the previous block's output; the
    official model uses one: its config's ``depth: 6`` only sizes a drop-path schedule),
    ``num_heads``, ``mlp_ratio``, ``pos_embed`` (a learned position embedding per patch).

    ``forward(x)`` gives (B, num_classes) logits, 0 for the classes of sessions not yet
    active, and keeps the active sessions' tokens e_s (B, D) in ``last_tokens`` for the token
    loss (not copied with the model). ``features(x)``: the pooled map, as the official
    herding reads (``pool_embeddings``). ``start_session(t, freeze)`` activates sessions
    0..t and freezes the old tokens and / or heads.
    """

    def __init__(self, trunk: nn.Module, sessions: list[list[int]], sample: torch.Tensor, *,
                 embed_dim=None, depth: int = 1, num_heads: int = 8, mlp_ratio: float = 4.0,
                 pos_embed: bool = True):
        super().__init__()
        self.trunk = trunk
        channels, n_tokens, self.grid = self._probe(sample)
        dim = embed_dim or min(768, channels)
        if dim % num_heads:
            raise ValueError(f"KRT: embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.sizes = [len(classes) for classes in sessions]
        self.active = 1
        self.last_tokens: list[torch.Tensor] = []
        self.proj = nn.Linear(channels, dim)  # the official 1x1 convolution, same init
        nn.init.kaiming_normal_(self.proj.weight, mode="fan_out", nonlinearity="leaky_relu")
        self.pos_embed = nn.Parameter(_trunc_normal(1, n_tokens, dim)) if pos_embed else None
        self.cls_token = nn.Parameter(_trunc_normal(1, 1, dim))
        self.task_tokens = nn.ParameterList([_trunc_normal(1, 1, dim) for _ in sessions])
        self.blocks = nn.ModuleList(ClassAttentionBlock(dim, num_heads, mlp_ratio)
                                    for _ in range(depth))
        self.heads = nn.ModuleList(SessionHead(dim, size) for size in self.sizes)
        nn.init.normal_(self.heads[0].linear.weight, std=0.01)  # official: the first head only

    @torch.no_grad()
    def _probe(self, sample: torch.Tensor):
        was = self.trunk.training
        device = next(self.trunk.parameters(), sample).device
        out = self.trunk.eval()(sample[None].to(device))
        self.trunk.train(was)
        if out.dim() == 4:
            return out.shape[1], out.shape[2] * out.shape[3], tuple(out.shape[2:])
        return out.shape[2], out.shape[1], None

    def _patches(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(B, N, D) patch tokens: flattened, projected, position embedding added."""
        grid = tuple(feature_map.shape[2:]) if feature_map.dim() == 4 else None
        tokens = self.proj(feature_map.flatten(2).transpose(1, 2) if grid else feature_map)
        if self.pos_embed is None:
            return tokens
        pos = self.pos_embed
        if grid and grid != self.grid:  # another input size: resize the embedding's grid
            pos = F.interpolate(pos.transpose(1, 2).reshape(1, -1, *self.grid), size=grid,
                                mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
        return tokens + pos

    def _token(self, session: int, patches: torch.Tensor) -> torch.Tensor:
        """e_s (B, D): the KT token's output over [KT, KR_s, patches]."""
        b = len(patches)
        query = self.cls_token.expand(b, -1, -1)
        retention = self.task_tokens[session].expand(b, -1, -1)
        for block in self.blocks:
            query = block(torch.cat((query, retention, patches), dim=1))
        return query[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self._patches(self.trunk(x))
        self.last_tokens = [self._token(s, patches) for s in range(self.active)]
        logits = [head(token) for head, token in zip(self.heads, self.last_tokens)]
        future = sum(self.sizes[self.active:])
        logits.append(patches.new_zeros(len(patches), future))
        return torch.cat(logits, dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        feature_map = self.trunk(x)
        return feature_map.mean((2, 3)) if feature_map.dim() == 4 else feature_map.mean(1)

    def start_session(self, session: int, freeze: str = "tokens_heads") -> None:
        """Activate sessions 0..``session``; everything trains but, from session 1 on, the
        old KR tokens (``freeze`` ``tokens`` / ``tokens_heads``) and old heads (``heads`` /
        ``tokens_heads``)."""
        if freeze not in KRT_FREEZE:
            raise ValueError(f"unknown freeze {freeze!r}; accepted: {', '.join(KRT_FREEZE)}")
        self.active = session + 1
        self.requires_grad_(True)
        old = slice(0, session)
        if "tokens" in freeze:
            for token in self.task_tokens[old]:
                token.requires_grad_(False)
        if "heads" in freeze:
            self.heads[old].requires_grad_(False)

    def __getstate__(self):
        return {**super().__getstate__(), "last_tokens": []}  # a copy does not keep the last batch's tokens


def _trunc_normal(*shape) -> torch.Tensor:
    """timm's ``trunc_normal_(std=.02)`` (cut at +-2, i.e. +-100 std)."""
    return nn.init.trunc_normal_(torch.empty(*shape), std=0.02)


# --- the losses and the pseudo-labels --------------------------------------------------------

def token_loss(prev_tokens: list[torch.Tensor], tokens: list[torch.Tensor]) -> torch.Tensor:
    """``mean_b 1 - cos`` between the previous model's tokens and the current model's tokens
    of the same sessions, each list concatenated per image (unweighted), in float32 or
    wider (an autocast forward's tokens are half precision)."""
    old, new = torch.cat(prev_tokens, dim=1), torch.cat(tokens[:len(prev_tokens)], dim=1)
    dtype = torch.promote_types(new.dtype, torch.float32)
    return less_forget_loss(new.to(dtype), old.to(dtype))


def token_weight(lam: float, n_seen: int, n_new: int) -> float:
    """The token loss's weight in a session: ``lam * sqrt(n_seen / n_new)``."""
    return lam * math.sqrt(n_seen / n_new)


def summed(loss):
    """``loss`` (a mean over the supervised entries) as the sum over them."""
    def total(logits, targets, mask, **kwargs):
        return loss(logits, targets, mask, **kwargs) * mask.sum()
    return total


def restore_labels(targets: torch.Tensor, mask: torch.Tensor, prev_probs: torch.Tensor,
                   n_old: int, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DPL's targets: the first ``n_old`` columns of ``targets`` set to 1 (and marked labelled
    in ``mask``) where ``prev_probs`` (B, >= n_old) exceeds ``threshold``."""
    fill = torch.zeros_like(mask)
    fill[:, :n_old] = prev_probs[:, :n_old] > threshold
    return torch.where(fill, torch.ones_like(targets), targets), mask | fill


def dynamic_threshold(probs: torch.Tensor, start: float, target: float) -> tuple[float, float, bool]:
    """DPL's threshold search on the previous model's old-class probabilities ``probs``
    (N, n_old): from ``start``, one step of 0.005 at a time (kept within [0.0001, 0.999999]),
    up while the mean number of probabilities above the threshold per image exceeds
    ``target + 0.1``, down while it is below ``target - 0.1``, at most 100 steps.
    Returns the threshold, that mean at the last check, and whether it settled."""
    threshold = start
    for _ in range(DPL_STEPS):
        # a float32 tensor against Python floats, as the official code compares them (a
        # count on the window's edge, e.g. 366 / 300 against 1.12 + 0.1, falls the same way)
        count = (probs > threshold).sum() / probs.shape[0]
        if count > target + DPL_TOLERANCE:
            threshold = min(DPL_HIGH, threshold + DPL_STEP)
        elif count < target - DPL_TOLERANCE:
            threshold = max(DPL_LOW, threshold - DPL_STEP)
        else:
            return threshold, float(count), True
    return threshold, float(count), False


def label_cardinality(datasets) -> float:
    """Labelled positives per image over a stream's training sets (LabelledSets, one per
    session; an image in several sets counts once): DPL's ``cardinality`` (VOC 1.4, COCO 2.9
    in the official code)."""
    positives = sum(float((d.targets * d.mask).sum()) for d in datasets)
    images = len(torch.unique(torch.cat([d.index for d in datasets])))
    return positives / max(1, images)


# --- the plugins -----------------------------------------------------------------------------

class KnowledgeRestore(SupervisedPlugin):
    """DPL (see the module docstring). ``mode``: ``dynamic`` (the official default),
    ``fixed`` (``thre`` throughout) or ``off``; ``cardinality``: labels per image of the
    stream. The session's threshold, its mean count of pseudo-labels per image and whether
    the search settled go to the session's notes (``krt``)."""

    needs_previous_model = True

    def __init__(self, mode: str, thre: float, cardinality: float):
        super().__init__()
        if mode not in KRT_RESTORE:
            raise ValueError(f"unknown restore {mode!r}; accepted: {', '.join(KRT_RESTORE)}")
        self.mode, self.threshold, self.cardinality = mode, thre, cardinality
        self.needs_previous_model = mode != "off"

    def before_training_exp(self, strategy, **kwargs):
        if self.mode != "dynamic" or strategy.prev_model is None:
            return
        n_old = strategy.n_old
        probs = probabilities(strategy, strategy.prev_model, strategy.adapted_dataset)
        target = self.cardinality * n_old / strategy.info.num_classes
        self.threshold, count, settled = dynamic_threshold(probs[:, :n_old], self.threshold,
                                                           target)
        strategy.notes["krt"] = {"threshold": self.threshold, "pseudo_per_image": count,
                                 "target_per_image": target, "settled": settled}

    def after_forward(self, strategy, **kwargs):
        if self.mode == "off" or strategy.prev_output is None:
            return
        strategy.mbatch[1], strategy.mbatch[2] = restore_labels(
            strategy.mb_y, strategy.mb_mask, strategy.prev_output.sigmoid(), strategy.n_old,
            self.threshold)

    def trained_labels(self, strategy, data) -> tuple[torch.Tensor, torch.Tensor]:
        """The labels DPL gives the rows of ``data`` with the session's threshold (the
        previous model on the eval transform), for the memory-label diagnostics."""
        if self.mode == "off" or strategy.prev_model is None:
            return data.targets, data.mask
        probs = probabilities(strategy, strategy.prev_model, data).cpu()
        return restore_labels(data.targets, data.mask, probs, strategy.n_old, self.threshold)


class KnowledgeTransfer(SupervisedPlugin):
    """ICA's session bookkeeping (``KRTNet.start_session``) and the token loss, added with
    weight ``token_weight(lam, n_seen, n_new)`` from session 1 on."""

    needs_previous_model = True

    def __init__(self, lam: float, freeze: str):
        super().__init__()
        self.lam, self.freeze = lam, freeze

    def before_training_exp(self, strategy, **kwargs):
        strategy.model.start_session(strategy.session, self.freeze)

    def before_backward(self, strategy, **kwargs):
        if not self.lam or strategy.prev_output is None:  # prev_output runs the old model
            return
        weight = token_weight(self.lam, strategy.n_seen, strategy.n_seen - strategy.n_old)
        strategy.loss += weight * token_loss(strategy.prev_model.last_tokens,
                                             strategy.model.last_tokens)

    def after_training_iteration(self, strategy, **kwargs):
        strategy.model.last_tokens = []  # free the graph's tokens
