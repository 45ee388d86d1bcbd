"""Templates of processors, checked at validate time like column templates."""

from __future__ import annotations

from .._core._suggest import did_you_mean
from .._exceptions import ConfigError
from ..config._templates import template_facts
from ..generators._templates import check_template, environment, precompile
from ._base import ColumnSet

__all__ = ["check_processor_template"]


def check_processor_template(label: str, field: str, source: str, columns: ColumnSet) -> None:
    """Syntax, filters and the columns ``source`` reads, before any request.

    Raises:
      ConfigError: the template does not compile, or reads a name that is neither a column of
        the table at this point of the chain nor a template global.
    """
    where = f"processor {label!r}"
    check_template(source, column=label, field=field)
    precompile(source, column=label, field=field)
    known = set(columns.names) | set(environment().globals)
    unknown = sorted(template_facts(source).variables - known)
    if unknown:
        raise ConfigError(
            [
                f"{where!s}: {field} references {name!r}, which is not a column of the table at "
                f"this point; " + did_you_mean(name, columns.names, otherwise="check the spelling")
                for name in unknown
            ]
        )
