"""trio_designer: synthetic datasets with LLMs, scheduled cell by cell on Trio.

The public face. ``import trio_designer`` gives the user API:

* the designer and what it returns: :class:`TrioDesigner`, :class:`RunResult` and its parts
  (:class:`ColumnSummary`, :class:`FailureRecord`, :class:`TaskTrace`), and the trace tools
  (:func:`export_chrome_trace`, :func:`plot_timeline`);
* the config classes a user writes (re-exported from :mod:`trio_designer.config`);
* the exceptions, one tree rooted at :class:`TrioDesignerError`;
* the public sub-modules: :mod:`~trio_designer.aio` (asyncio and notebooks),
  :mod:`~trio_designer.config`, :mod:`~trio_designer.generators` (what a custom column's
  function receives), :mod:`~trio_designer.models` (limiters, model handles),
  :mod:`~trio_designer.plugins` (what a plugin package subclasses) and
  :mod:`~trio_designer.simulator` (the simulated OpenAI-compatible endpoint).

Every object has one public name; ``docs/api.md`` lists them all and ``tests/test_exports.py``
checks that list against each module's ``__all__``. Layering (data flows one way):
``config/`` → the execution graph → ``_engine/`` (trio drivers) over ``_core/`` (pure
decisions) → ``generators/`` → ``models/`` (client, limiters) → the sink (parquet).
"""

from __future__ import annotations

from . import _public
from . import aio as aio
from . import config as config
from . import generators as generators
from . import models as models
from . import plugins as plugins
from . import simulator as simulator
from ._designer import ColumnSummary as ColumnSummary
from ._designer import RunResult as RunResult
from ._designer import TrioDesigner as TrioDesigner
from ._engine._state import FailureRecord as FailureRecord
from ._exceptions import ConfigError as ConfigError
from ._exceptions import EventLoopError as EventLoopError
from ._exceptions import GenerationError as GenerationError
from ._exceptions import MissingDependencyError as MissingDependencyError
from ._exceptions import ModelConnectionError as ModelConnectionError
from ._exceptions import ModelContentFilteredError as ModelContentFilteredError
from ._exceptions import ModelOutputError as ModelOutputError
from ._exceptions import ModelRateLimitedError as ModelRateLimitedError
from ._exceptions import ModelRequestError as ModelRequestError
from ._exceptions import ModelServerError as ModelServerError
from ._exceptions import ModelTimeoutError as ModelTimeoutError
from ._exceptions import NonRetryableGenerationError as NonRetryableGenerationError
from ._exceptions import PluginError as PluginError
from ._exceptions import ProviderError as ProviderError
from ._exceptions import RetryableGenerationError as RetryableGenerationError
from ._exceptions import RunInterrupted as RunInterrupted
from ._exceptions import SinkError as SinkError
from ._exceptions import TraceExportError as TraceExportError
from ._exceptions import TrioDesignerError as TrioDesignerError
from ._observe import TaskTrace as TaskTrace
from ._observe import export_chrome_trace as export_chrome_trace
from ._observe import plot_timeline as plot_timeline
from ._sink._export import export_dataset as export_dataset
from .config import BernoulliSampler as BernoulliSampler
from .config import CategorySampler as CategorySampler
from .config import CustomColumn as CustomColumn
from .config import DatetimeSampler as DatetimeSampler
from .config import DistributionSampler as DistributionSampler
from .config import ExpressionColumn as ExpressionColumn
from .config import GaussianSampler as GaussianSampler
from .config import InferenceParams as InferenceParams
from .config import LLMCodeColumn as LLMCodeColumn
from .config import LLMEmbeddingColumn as LLMEmbeddingColumn
from .config import LLMJudgeColumn as LLMJudgeColumn
from .config import LLMStructuredColumn as LLMStructuredColumn
from .config import LLMTextColumn as LLMTextColumn
from .config import ModelConfig as ModelConfig
from .config import ModelProvider as ModelProvider
from .config import PersonSampler as PersonSampler
from .config import PipelineBuilder as PipelineBuilder
from .config import PipelineConfig as PipelineConfig
from .config import PoissonSampler as PoissonSampler
from .config import Rubric as Rubric
from .config import RunConfig as RunConfig
from .config import SeedColumn as SeedColumn
from .config import SeedConfig as SeedConfig
from .config import SeedPartition as SeedPartition
from .config import SeedSelection as SeedSelection
from .config import SubcategorySampler as SubcategorySampler
from .config import TimeDeltaSampler as TimeDeltaSampler
from .config import UniformSampler as UniformSampler
from .config import UUIDSampler as UUIDSampler

__version__ = "0.1.0"

__all__ = [
    "BernoulliSampler",
    "CategorySampler",
    "ColumnSummary",
    "ConfigError",
    "CustomColumn",
    "DatetimeSampler",
    "DistributionSampler",
    "EventLoopError",
    "ExpressionColumn",
    "FailureRecord",
    "GaussianSampler",
    "GenerationError",
    "InferenceParams",
    "LLMCodeColumn",
    "LLMEmbeddingColumn",
    "LLMJudgeColumn",
    "LLMStructuredColumn",
    "LLMTextColumn",
    "MissingDependencyError",
    "ModelConfig",
    "ModelConnectionError",
    "ModelContentFilteredError",
    "ModelOutputError",
    "ModelProvider",
    "ModelRateLimitedError",
    "ModelRequestError",
    "ModelServerError",
    "ModelTimeoutError",
    "NonRetryableGenerationError",
    "PersonSampler",
    "PipelineBuilder",
    "PipelineConfig",
    "PluginError",
    "PoissonSampler",
    "ProviderError",
    "RetryableGenerationError",
    "Rubric",
    "RunConfig",
    "RunInterrupted",
    "RunResult",
    "SeedColumn",
    "SeedConfig",
    "SeedPartition",
    "SeedSelection",
    "SinkError",
    "SubcategorySampler",
    "TaskTrace",
    "TimeDeltaSampler",
    "TraceExportError",
    "TrioDesigner",
    "TrioDesignerError",
    "UUIDSampler",
    "UniformSampler",
    "export_chrome_trace",
    "export_dataset",
    "plot_timeline",
]

_public.present_as(__name__, globals(), __all__)
