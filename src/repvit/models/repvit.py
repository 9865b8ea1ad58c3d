"""RepViT: Revisiting Mobile CNN From ViT Perspective.

Wang, Chen, Lin, Han, Ding — CVPR 2024, https://arxiv.org/abs/2307.09283

A MobileNetV3-L modernised with the design choices of lightweight ViTs: a MetaFormer of a re-parameterizable
depthwise token mixer (+ cross-block SE) and a residual FFN channel mixer, an early-convolution stem, deeper
downsampling layers and a simple BN + Linear classifier. Trained multi-branch, deployed as plain convs.

Module and parameter names follow timm's port, so timm state dicts load as they are; the authors' flat
``features.N`` layout is converted in :mod:`repvit.models.checkpoint`.
"""

# no `from __future__ import annotations`: torch.fx copies forward's annotation into traced code, where the
# string 'torch.Tensor' would stop TorchScript from compiling an FX-traced model
from collections.abc import Sequence

import torch
import torch.nn as nn
from timm.layers import DropPath, SqueezeExcite
from timm.models import FeatureInfo
from torch.fx._symbolic_trace import is_fx_symbolic_tracing
from torch.utils.checkpoint import checkpoint

from .config import BlockConfig, RepViTConfig
from .layers import ConvMlp, ConvNorm, FusableMixin, LegacyRepVGGDW, NormLinear, RepVGGDW, TwoHeadsMixin, mean_linear
from .onednn import conv_act
from .pretrained import init_pretrained_cfg, refresh_pretrained_cfg

__all__ = [
    "RepViTBlock",
    "RepViTStem",
    "RepViTDownsample",
    "RepViTStage",
    "RepViTClassifier",
    "RepViT",
    "RepViTFeatures",
    "StagedClassifier",
    "MIN_INPUT_SIZE",
    "check_backbone_args",
    "GLOBAL_POOL_TYPES",
    "check_input",
    "global_pool_2d",
]

MIN_INPUT_SIZE = 32
GLOBAL_POOL_TYPES = ("avg", "")


def _token_mixer(kind: str, dim: int, kernel_size: int) -> nn.Module:
    return LegacyRepVGGDW(dim, kernel_size) if kind == "legacy" else RepVGGDW(dim, kernel_size)


def _drop_path(rate: float) -> nn.Module:
    return DropPath(rate) if rate > 0 else nn.Identity()


class RepViTBlock(nn.Module):
    """Stride-1 block: token mixer (RepVGGDW, optional SE) then a residual FFN channel mixer."""

    def __init__(
        self,
        cfg: BlockConfig,
        token_mixer: str = "repvggdw",
        se_ratio: float = 0.25,
        act_layer: type[nn.Module] = nn.GELU,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.token_mixer = _token_mixer(token_mixer, cfg.dim, cfg.kernel_size)
        self.se = SqueezeExcite(cfg.dim, rd_ratio=se_ratio) if cfg.use_se else nn.Identity()
        self.channel_mixer = ConvMlp(cfg.dim, int(cfg.dim * cfg.mlp_ratio), act_layer)
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.token_mixer(x))
        if not torch.jit.is_scripting() and not self.training:  # deploy form on a CPU: the residual add fused
            return self.channel_mixer.residual(x)
        return x + self.drop_path(self.channel_mixer(x))


class RepViTStem(nn.Module):
    """Early convolutions: two stride-2 3x3 conv+BN with GELU between them (output stride 4)."""

    def __init__(self, in_chans: int, out_chs: int, act_layer: type[nn.Module] = nn.GELU):
        super().__init__()
        self.conv1 = ConvNorm(in_chans, out_chs // 2, 3, stride=2, padding=1)
        self.act1 = act_layer()
        self.conv2 = ConvNorm(out_chs // 2, out_chs, 3, stride=2, padding=1)
        self.stride = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # deploy form on a CPU: conv and activation in one call
            return self.conv2(conv_act(self.conv1, self.act1, x))
        return self.conv2(self.act1(self.conv1(x)))


class RepViTDownsample(nn.Module):
    """Deeper downsampling: a stride-1 block without SE, depthwise stride-2 conv, 1x1 conv, residual FFN."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        cfg: RepViTConfig,
        act_layer: type[nn.Module] = nn.GELU,
        drop_path: tuple[float, float] = (0.0, 0.0),
    ):
        super().__init__()
        k = cfg.kernel_size
        self.pre_block = RepViTBlock(
            BlockConfig(in_dim, False, k, cfg.mlp_ratio), cfg.token_mixer, cfg.se_ratio, act_layer, drop_path[0]
        )
        self.spatial_downsample = ConvNorm(in_dim, in_dim, k, stride=2, groups=in_dim)
        self.channel_downsample = ConvNorm(in_dim, out_dim, 1)
        self.ffn = ConvMlp(out_dim, int(out_dim * cfg.mlp_ratio), act_layer)
        self.drop_path = _drop_path(drop_path[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel_downsample(self.spatial_downsample(self.pre_block(x)))
        if not torch.jit.is_scripting() and not self.training:
            return self.ffn.residual(x)
        return x + self.drop_path(self.ffn(x))


class RepViTStage(nn.Module):
    """An optional downsampling layer followed by stride-1 blocks."""

    def __init__(
        self,
        in_dim: int,
        stage: int,
        cfg: RepViTConfig,
        act_layer: type[nn.Module] = nn.GELU,
        drop_path: Sequence[float] = (),
    ):
        super().__init__()
        out_dim = cfg.widths[stage]
        dpr = list(drop_path)
        if stage > 0:
            self.downsample = RepViTDownsample(in_dim, out_dim, cfg, act_layer, (dpr[0], dpr[1]))
            dpr = dpr[2:]
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(
            *[
                RepViTBlock(b, cfg.token_mixer, cfg.se_ratio, act_layer, dpr[i])
                for i, b in enumerate(cfg.stage_blocks(stage))
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class RepViTClassifier(TwoHeadsMixin, FusableMixin, nn.Module):
    """BN + Linear head, optionally with a second (distillation) head.

    With distillation the module returns ``(cls_logits, dist_logits)`` in train mode and their mean in eval
    mode; its deploy form is one Linear layer holding the average of both fused heads. Without distillation (or
    without classes) ``head_dist`` is ``None``: TorchScript compiles both branches, so the attribute always exists.
    """

    def __init__(self, dim: int, num_classes: int, distillation: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.distillation = distillation
        self.head = NormLinear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self.head_dist = NormLinear(dim, num_classes) if distillation and num_classes > 0 else None

    def forward(self, x: torch.Tensor):
        return self.two_heads(x)

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        if self.num_classes <= 0:
            return nn.Identity()
        head = self.head.fuse()
        return head if self.head_dist is None else mean_linear(head, self.head_dist.fuse())


def check_input(x: torch.Tensor, in_chans: int) -> None:
    """Eager-mode input check with errors that say how to fix the input.

    Call it as ``if not torch.jit.is_scripting(): check_input(x, c)``: it does nothing while torch.fx or
    ``torch.jit.trace`` traces the model (a shape test on a traced value would be control flow, or would be frozen
    into the trace), and TorchScript never compiles it.
    """
    if torch.jit.is_tracing() or is_fx_symbolic_tracing():
        return
    if x.dim() != 4:
        raise ValueError(f"RepViT expects a 4-D input (N, C, H, W), got a tensor of shape {tuple(x.shape)}.")
    if x.shape[1] != in_chans:
        raise ValueError(
            f"RepViT was built for {in_chans} input channels but got {x.shape[1]} (input shape {tuple(x.shape)}). "
            f"Pass in_chans={x.shape[1]} to create_model, or convert the images to {in_chans} channels."
        )
    if x.shape[2] < MIN_INPUT_SIZE or x.shape[3] < MIN_INPUT_SIZE:
        raise ValueError(
            f"RepViT needs inputs of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} px (total stride 32), got "
            f"{x.shape[2]}x{x.shape[3]}. Resize the images up."
        )


def global_pool_2d(x: torch.Tensor, pool_type: str) -> torch.Tensor:
    """Global average pooling ``(N, C, H, W) -> (N, C)`` for ``"avg"``; the input unchanged for ``""``.

    The mean is taken with ``keepdim=True`` and then flattened: ExecuTorch's XNNPACK delegate lowers that form
    (a 4-D mean), so a whole model goes to the delegate in one piece.
    """
    if pool_type == "avg":
        return x.mean((2, 3), keepdim=True).flatten(1)
    return x


def check_global_pool(global_pool: str, num_classes: int) -> None:
    if global_pool not in GLOBAL_POOL_TYPES:
        raise ValueError(f"global_pool must be 'avg' (average pooling) or '' (no pooling), got {global_pool!r}.")
    if global_pool == "" and num_classes > 0:
        raise ValueError(
            f"global_pool='' returns unpooled (N, C, H, W) features, which a {num_classes}-class head cannot take; "
            "use num_classes=0 with it, or global_pool='avg' for a classifier."
        )


def _drop_path_rates(cfg: RepViTConfig, rate: float) -> list[list[float]]:
    """Linearly increasing stochastic-depth rates, split per stage in execution order."""
    n = cfg.num_blocks()
    rates = [rate * i / max(n - 1, 1) for i in range(n)]
    out, i = [], 0
    for s in range(cfg.num_stages):
        k = cfg.depths[s] + (2 if s > 0 else 0)
        out.append(rates[i : i + k])
        i += k
    return out


def _build_backbone(model: nn.Module, cfg: RepViTConfig, in_chans: int, drop_path_rate: float) -> None:
    """Give ``model`` RepViT's stem and stages, and ``cfg``, ``in_chans``, ``stage_info`` and ``num_features``."""
    check_backbone_args(in_chans, drop_path_rate)
    act_layer = nn.GELU
    model.cfg = cfg
    model.in_chans = in_chans
    model.grad_checkpointing = False
    model.stem = RepViTStem(in_chans, cfg.widths[0], act_layer)
    dpr = _drop_path_rates(cfg, drop_path_rate)
    stages, in_dim, stride = [], cfg.widths[0], model.stem.stride
    model.stage_info = []
    for s in range(cfg.num_stages):
        stages.append(RepViTStage(in_dim, s, cfg, act_layer, dpr[s]))
        stride *= 2 if s > 0 else 1
        model.stage_info.append(dict(num_chs=cfg.widths[s], reduction=stride, module=f"stages.{s}"))
        in_dim = cfg.widths[s]
    model.stages = nn.Sequential(*stages)
    model.num_features = cfg.widths[-1]


def check_backbone_args(in_chans: int, drop_path_rate: float) -> None:
    """Raise a ``ValueError`` for fewer than one input channel or a drop-path rate outside [0, 1)."""
    if in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}.")
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}.")


class _StagedNet(nn.Module):
    """A ``stem`` followed by ``stages`` (an ``nn.Sequential``): gradient checkpointing over the stages, and
    :meth:`fuse`."""

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory: recompute each stage's activations in the backward pass."""
        self.grad_checkpointing = enable

    @torch.jit.unused
    def _checkpointed_stages(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = checkpoint(stage, x, use_reentrant=False)
        return x

    @torch.no_grad()
    def fuse(self, inplace: bool = False) -> nn.Module:
        """The deploy form of this model (see :func:`repvit.fuse_model`)."""
        from .fuse import fuse_model

        return fuse_model(self, inplace=inplace)


class StagedClassifier(_StagedNet):
    """timm's classifier contract over ``forward_features`` and a head, for RepViT and the roadmap networks.

    A subclass sets ``in_chans``, ``num_classes``, ``global_pool``, ``distillation``, ``num_features``,
    ``head_drop`` and ``head``, and implements ``forward_features`` and ``_make_head(num_classes, distillation)``.
    """

    def _make_head(self, num_classes: int, distillation: bool) -> nn.Module:
        raise NotImplementedError

    def _set_head_args(self, num_classes: int, distillation: bool, global_pool: str) -> None:
        """Check and keep the constructor's head arguments."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}.")
        check_global_pool(global_pool, num_classes)
        self.num_classes, self.distillation, self.global_pool = num_classes, distillation, global_pool

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    @torch.jit.ignore
    def reset_classifier(self, num_classes: int, global_pool: str | None = None,
                         distillation: bool | None = None) -> None:
        """Replace the head with a freshly initialised one, as timm's ``reset_classifier`` does.

        Args:
            num_classes: classes of the new head; 0 removes it (the model returns pooled features).
            global_pool: ``"avg"`` (the default) or ``""``: no pooling and no head, the model returns the
                ``(N, C, H, W)`` features. ``None`` keeps the current setting.
            distillation: give the new head a distillation head; ``None`` keeps the current setting.

        The new head takes the model's device, dtype and train/eval mode.
        """
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}.")
        pool = self.global_pool if global_pool is None else global_pool
        check_global_pool(pool, num_classes)
        self.num_classes, self.global_pool = num_classes, pool
        if distillation is not None:
            self.distillation = distillation
        ref = next(self.parameters())
        self.head = self._make_head(num_classes, self.distillation).to(ref.device, ref.dtype).train(self.training)
        refresh_pretrained_cfg(self)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False):
        x = self.head_drop(global_pool_2d(x, self.global_pool))
        if pre_logits:
            return x
        return self.head(x)

    def forward(self, x: torch.Tensor):
        if not torch.jit.is_scripting():
            check_input(x, self.in_chans)
        return self.forward_head(self.forward_features(x))


def _take_indices(num: int, indices: int | Sequence[int] | None) -> list[int]:
    if indices is None:
        return list(range(num))
    if isinstance(indices, int):
        if not 0 < indices <= num:
            raise ValueError(f"indices={indices} must be between 1 and {num} (take the last n stages).")
        return list(range(num - indices, num))
    out = [i if i >= 0 else num + i for i in indices]
    bad = [i for i in out if not 0 <= i < num]
    if bad:
        raise ValueError(f"stage indices {list(indices)} out of range for {num} stages.")
    return sorted(out)


class RepViT(StagedClassifier):
    """RepViT image classifier.

    Args:
        cfg: the architecture.
        num_classes: classes of the head; 0 gives a model that returns pooled features.
        in_chans: input channels.
        distillation: add a second (distillation) head, DeiT style.
        drop_rate: dropout before the head.
        drop_path_rate: stochastic depth, increasing linearly over the residual FFNs.
        global_pool: ``"avg"``, or ``""`` for no pooling (with ``num_classes=0``: ``forward`` returns the
            ``(N, C, H, W)`` features).

    ``pretrained_cfg`` (alias ``default_cfg``) holds the preprocessing the weights expect, as in timm (see
    :mod:`repvit.models.pretrained`).
    """

    def __init__(
        self,
        cfg: RepViTConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        distillation: bool = False,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
    ):
        super().__init__()
        self._set_head_args(num_classes, distillation, global_pool)
        _build_backbone(self, cfg, in_chans, drop_path_rate)
        self.feature_info = list(self.stage_info)
        self.head_hidden_size = self.num_features
        self.head_drop = nn.Dropout(drop_rate)
        self.head = self._make_head(num_classes, distillation)
        init_pretrained_cfg(self)

    def _make_head(self, num_classes: int, distillation: bool) -> nn.Module:
        return RepViTClassifier(self.num_features, num_classes, distillation)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return self._checkpointed_stages(x)
        return self.stages(x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """Stage outputs (strides 4, 8, 16, 32) for dense tasks, as in timm.

        Returns the list of selected stage outputs, or ``(final_features, intermediates)`` unless
        ``intermediates_only``. ``norm`` is accepted as in timm's signature; RepViT has no final norm.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}.")
        take = _take_indices(len(self.stages), indices)
        last = max(take) if (stop_early or intermediates_only) else len(self.stages) - 1
        intermediates = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i > last:
                break
            x = stage(x)
            if i in take:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates


class RepViTFeatures(_StagedNet):
    """RepViT backbone for dense tasks: returns the outputs of the stages in ``out_indices``.

    Holds the same ``stem``/``stages`` modules as :class:`RepViT`, so classifier checkpoints load into it (the head
    is dropped).
    """

    def __init__(
        self,
        cfg: RepViTConfig,
        in_chans: int = 3,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        _build_backbone(self, cfg, in_chans, drop_path_rate)
        self.out_indices = _take_indices(cfg.num_stages, list(out_indices))
        # timm's feature models: all stages described, channels()/reduction()/module_name() give the selected ones
        self.feature_info = FeatureInfo([dict(f) for f in self.stage_info], tuple(self.out_indices))
        # only keep the stages that are needed
        self.stages = self.stages[: max(self.out_indices) + 1]
        self.num_classes = 0
        init_pretrained_cfg(self)

    @torch.jit.ignore
    def feature_channels(self) -> list[int]:
        return self.feature_info.channels()

    @torch.jit.ignore
    def feature_strides(self) -> list[int]:
        return self.feature_info.reduction()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if not torch.jit.is_scripting():
            check_input(x, self.in_chans)
        x = self.stem(x)
        out = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                out.append(x)
        return out
