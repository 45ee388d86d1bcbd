"""trio_designer: synthetic datasets with LLMs, scheduled cell by cell on Trio.

Layering (data flows one way): ``config/`` (frozen attrs values, the one cattrs converter) →
``_graph`` (execution graph) → ``_engine/`` (trio drivers) over ``_core/`` (pure decisions) →
``generators/`` → ``models/`` (client, limiters) → ``_sink`` (parquet). Every implementation
module is private; this file is the public face, and ``tests/test_exports.py`` pins it.
"""

from __future__ import annotations

from ._core._limits import Policy as LimiterPolicy
from ._designer import (
    ColumnSummary as ColumnSummary,
)
from ._designer import (
    RunResult as RunResult,
)
from ._designer import (
    TrioDesigner as TrioDesigner,
)
from ._engine._runtime import FailureRecord as FailureRecord
from ._engine._trace import TaskTrace as TaskTrace
from ._exceptions import (
    ConfigError as ConfigError,
)
from ._exceptions import (
    GenerationError as GenerationError,
)
from ._exceptions import (
    ModelConnectionError as ModelConnectionError,
)
from ._exceptions import (
    ModelOutputError as ModelOutputError,
)
from ._exceptions import (
    ModelRateLimitedError as ModelRateLimitedError,
)
from ._exceptions import (
    ModelRequestError as ModelRequestError,
)
from ._exceptions import (
    ModelServerError as ModelServerError,
)
from ._exceptions import (
    ModelTimeoutError as ModelTimeoutError,
)
from ._exceptions import (
    NonRetryableGenerationError as NonRetryableGenerationError,
)
from ._exceptions import (
    RetryableGenerationError as RetryableGenerationError,
)
from ._exceptions import (
    RunInterrupted as RunInterrupted,
)
from ._exceptions import (
    SinkError as SinkError,
)
from ._exceptions import (
    TrioDesignerError as TrioDesignerError,
)
from ._traceexport import TraceExportError as TraceExportError
from ._traceexport import export_chrome_trace as export_chrome_trace
from ._traceexport import plot_timeline as plot_timeline
from .config import (
    BernoulliSampler as BernoulliSampler,
)
from .config import (
    CategorySampler as CategorySampler,
)
from .config import (
    CustomColumn as CustomColumn,
)
from .config import (
    DatetimeSampler as DatetimeSampler,
)
from .config import (
    ExpressionColumn as ExpressionColumn,
)
from .config import (
    GaussianSampler as GaussianSampler,
)
from .config import (
    InferenceParams as InferenceParams,
)
from .config import (
    LLMCodeColumn as LLMCodeColumn,
)
from .config import (
    LLMJudgeColumn as LLMJudgeColumn,
)
from .config import (
    LLMStructuredColumn as LLMStructuredColumn,
)
from .config import (
    LLMTextColumn as LLMTextColumn,
)
from .config import (
    ModelConfig as ModelConfig,
)
from .config import (
    ModelProvider as ModelProvider,
)
from .config import (
    PipelineBuilder as PipelineBuilder,
)
from .config import (
    PipelineConfig as PipelineConfig,
)
from .config import (
    PoissonSampler as PoissonSampler,
)
from .config import (
    Rubric as Rubric,
)
from .config import (
    RunConfig as RunConfig,
)
from .config import (
    SubcategorySampler as SubcategorySampler,
)
from .config import (
    UniformSampler as UniformSampler,
)
from .config import (
    UUIDSampler as UUIDSampler,
)
from .generators import (
    CellContext as CellContext,
)
from .generators import (
    ColumnContext as ColumnContext,
)
from .generators import (
    ColumnGenerator as ColumnGenerator,
)
from .models._limiter import AdaptiveLimiter as AdaptiveLimiter
from .models._limiter import StaticLimiter as StaticLimiter

__version__ = "0.1.0"

__all__ = [
    "AdaptiveLimiter",
    "BernoulliSampler",
    "CategorySampler",
    "CellContext",
    "ColumnContext",
    "ColumnGenerator",
    "ColumnSummary",
    "ConfigError",
    "CustomColumn",
    "DatetimeSampler",
    "ExpressionColumn",
    "FailureRecord",
    "GaussianSampler",
    "GenerationError",
    "InferenceParams",
    "LLMCodeColumn",
    "LLMJudgeColumn",
    "LLMStructuredColumn",
    "LLMTextColumn",
    "LimiterPolicy",
    "ModelConfig",
    "ModelConnectionError",
    "ModelOutputError",
    "ModelProvider",
    "ModelRateLimitedError",
    "ModelRequestError",
    "ModelServerError",
    "ModelTimeoutError",
    "NonRetryableGenerationError",
    "PipelineBuilder",
    "PipelineConfig",
    "PoissonSampler",
    "RetryableGenerationError",
    "Rubric",
    "RunConfig",
    "RunInterrupted",
    "RunResult",
    "SinkError",
    "StaticLimiter",
    "SubcategorySampler",
    "TaskTrace",
    "TraceExportError",
    "TrioDesigner",
    "TrioDesignerError",
    "UUIDSampler",
    "UniformSampler",
    "export_chrome_trace",
    "plot_timeline",
]
