"""The sections, one module each; ``SECTIONS`` maps each name to its function of one ``Context``, in run order
(matmul_peak first: later sections report fractions of its rate)."""

from __future__ import annotations

from typing import Callable

from ..context import Context
from .attention import section_attention_cudnn_vs_xla
from .compile import section_compile
from .ltx2_pipeline import section_ltx2_pipeline
from .ltx2_transformer import section_ltx2_transformer
from .matmul_peak import section_matmul_peak
from .multi_scale import section_multi_scale
from .pipeline import section_pipeline
from .pipeline_vs_cpu import section_pipeline_vs_cpu_fp32
from .scheduler import section_scheduler
from .sharding import section_sharding
from .step_cache import section_step_cache
from .text_encoder import section_text_encoder
from .transformer import section_transformer
from .vae import section_vae

SECTIONS: dict[str, Callable[[Context], None]] = {
    "matmul_peak": section_matmul_peak,
    "attention_cudnn_vs_xla": section_attention_cudnn_vs_xla,
    "pipeline_vs_cpu_fp32": section_pipeline_vs_cpu_fp32,
    "transformer": section_transformer,
    "ltx2_transformer": section_ltx2_transformer,
    "ltx2_pipeline": section_ltx2_pipeline,
    "text_encoder": section_text_encoder,
    "scheduler": section_scheduler,
    "vae": section_vae,
    "pipeline": section_pipeline,
    "step_cache": section_step_cache,
    "multi_scale": section_multi_scale,
    "compile": section_compile,
    "sharding": section_sharding,
}

