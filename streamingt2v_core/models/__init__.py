"""StreamingT2V models: ModelScope UNet3D, the extender (CAM + APM) and the refiner UNet (plain PyTorch).

Attention goes through one injection point, ``model.set_attention_function(fn)`` (see :mod:`.attention`).
"""

from .apm import AppearanceMixingCrossAttention, AppearancePreservationModule
from .attention import AttentionFn, install_attention_function, sdpa_attention
from .cam import CAMFeatures, ConditionalAttentionModule, CrossAttentionMerger, FrameConditioningEncoder
from .config import ExtenderConfig, RefinerUNetConfig, UNet3DConfig
from .extender import ConditionedUNet3D, StreamingT2VExtender
from .unet3d import ControlResiduals, UNet3D

__all__ = [
    "AttentionFn",
    "sdpa_attention",
    "install_attention_function",
    "UNet3DConfig",
    "ExtenderConfig",
    "RefinerUNetConfig",
    "UNet3D",
    "ControlResiduals",
    "ConditionedUNet3D",
    "StreamingT2VExtender",
    "ConditionalAttentionModule",
    "FrameConditioningEncoder",
    "CrossAttentionMerger",
    "CAMFeatures",
    "AppearancePreservationModule",
    "AppearanceMixingCrossAttention",
]
