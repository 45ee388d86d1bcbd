"""Pipeline configuration: frozen attrs values, loaded and written at the edge by one converter.

Build a config from YAML/JSON (``PipelineConfig.from_yaml``), from plain data
(``PipelineConfig.from_dict``) or in Python (:class:`PipelineBuilder`); every path raises one
:class:`~trio_designer.ConfigError` that lists every problem with its path
(``columns[3].prompt: ...``). See :mod:`._columns` for the column kinds, :mod:`._models` for
endpoints and :mod:`._run` for execution settings.

This module exports what a user needs to write configs: the config classes (also exported by
``trio_designer`` itself, under the same names), the column type unions for annotations, the
built-in provider's name, and two checks (:func:`validate_references`,
:func:`config_fingerprint`). ``docs/api.md`` lists them.
"""

from __future__ import annotations

from .. import _public
from ._columns import BernoulliSampler as BernoulliSampler
from ._columns import CategorySampler as CategorySampler
from ._columns import ColumnConfig as ColumnConfig
from ._columns import CustomColumn as CustomColumn
from ._columns import DatetimeSampler as DatetimeSampler
from ._columns import DistributionSampler as DistributionSampler
from ._columns import ExpressionColumn as ExpressionColumn
from ._columns import GaussianSampler as GaussianSampler
from ._columns import LLMCodeColumn as LLMCodeColumn
from ._columns import LLMColumnConfig as LLMColumnConfig
from ._columns import LLMEmbeddingColumn as LLMEmbeddingColumn
from ._columns import LLMJudgeColumn as LLMJudgeColumn
from ._columns import LLMStructuredColumn as LLMStructuredColumn
from ._columns import LLMTextColumn as LLMTextColumn
from ._columns import PersonSampler as PersonSampler
from ._columns import PoissonSampler as PoissonSampler
from ._columns import Rubric as Rubric
from ._columns import SamplerConfig as SamplerConfig
from ._columns import SeedColumn as SeedColumn
from ._columns import SubcategorySampler as SubcategorySampler
from ._columns import TimeDeltaSampler as TimeDeltaSampler
from ._columns import UniformSampler as UniformSampler
from ._columns import UUIDSampler as UUIDSampler
from ._fingerprint import config_fingerprint as config_fingerprint
from ._models import SIMULATOR_PROVIDER as SIMULATOR_PROVIDER
from ._models import InferenceParams as InferenceParams
from ._models import ModelConfig as ModelConfig
from ._models import ModelProvider as ModelProvider
from ._pipeline import PipelineBuilder as PipelineBuilder
from ._pipeline import PipelineConfig as PipelineConfig
from ._pipeline import validate_references as validate_references
from ._run import RunConfig as RunConfig
from ._seed import SeedConfig as SeedConfig
from ._seed import SeedPartition as SeedPartition
from ._seed import SeedSelection as SeedSelection

__all__ = [
    "SIMULATOR_PROVIDER",
    "BernoulliSampler",
    "CategorySampler",
    "ColumnConfig",
    "CustomColumn",
    "DatetimeSampler",
    "DistributionSampler",
    "ExpressionColumn",
    "GaussianSampler",
    "InferenceParams",
    "LLMCodeColumn",
    "LLMColumnConfig",
    "LLMEmbeddingColumn",
    "LLMJudgeColumn",
    "LLMStructuredColumn",
    "LLMTextColumn",
    "ModelConfig",
    "ModelProvider",
    "PersonSampler",
    "PipelineBuilder",
    "PipelineConfig",
    "PoissonSampler",
    "Rubric",
    "RunConfig",
    "SamplerConfig",
    "SeedColumn",
    "SeedConfig",
    "SeedPartition",
    "SeedSelection",
    "SubcategorySampler",
    "TimeDeltaSampler",
    "UUIDSampler",
    "UniformSampler",
    "config_fingerprint",
    "validate_references",
]

_public.present_as(__name__, globals(), __all__)
