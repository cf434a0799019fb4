"""`Query`: one named, documented SQL statement of the read layer, and how to run one (rows or a DataFrame).

Plain SQL with bind parameters (`:name`, never formatted-in values) that runs unchanged on SQLite and
PostgreSQL, or one variant per dialect where it cannot; optional conditions (`filters`) choose among a
fixed few texts; lists are expanding parameters (`IN :ids`, `list_params`). Time parameters and columns are typed (SQLite stores UTC text and compares it as text);
booleans come back as Python booleans on both backends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Connection, CursorResult, Engine, TextClause, bindparam, text

from ...car_state import CAR_STATE_SQL, DEFAULT_GRACE_S, overdue_before
from ...config import load_settings
from ...extras import require
from ...store.db import create_engine_for
from ...store.models import UTCDateTime

if TYPE_CHECKING:  # pandas is the analyst's dependency, not the package's
    import pandas as pd

# The car's state (deadline verdict), defined once in car_state; `c` is the cars row.
VERDICT_SQL = CAR_STATE_SQL


def binned(template: str, column: str) -> dict[str, str]:
    """`template` with {bin} = the 0-based time bin of `column` (:start_s, :width_s in whole Unix seconds)
    for each dialect: SQLite has no EXTRACT(EPOCH …) and (without its math extension) no FLOOR;
    strftime('%s') gives the whole seconds exactly (julianday's double would misplace times within
    ~50 µs of a bin edge) and its CAST to INTEGER truncates, which is the floor for times after 1970."""
    return {
        "postgresql": template.format(
            bin=f"CAST(FLOOR((CAST(EXTRACT(EPOCH FROM {column}) AS DOUBLE PRECISION) - :start_s) / :width_s) AS INTEGER)"
        ),
        "sqlite": template.format(bin=f"CAST((CAST(strftime('%s', {column}) AS INTEGER) - :start_s) / :width_s AS INTEGER)"),
    }


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    sql: str
    time_columns: tuple[str, ...] = ()
    bool_columns: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)  # values of the :bind parameters
    time_params: tuple[str, ...] = ()  # bind parameters that are datetimes (":overdue_before" from now and grace_s)
    variants: Mapping[str, str] = field(default_factory=dict)  # dialect name -> its SQL, where `sql` cannot serve both
    # Optional conditions: bind parameter -> (slot, condition). Each `{slot}` of the SQL becomes the AND of
    # the conditions whose parameter is given (not None), `1 = 1` when none is: the text is one of a fixed
    # few, and values are always bound, never formatted in.
    filters: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    list_params: tuple[str, ...] = ()  # bind parameters that are lists (`IN :ids`: one bound value each)

    def sql_for(self, dialect: str, params: Mapping[str, Any] | None = None) -> str:
        sql = self.variants.get(dialect) or self.sql
        if not self.filters:
            return sql
        slots: dict[str, list[str]] = {slot: [] for slot, _ in self.filters.values()}
        for name, (slot, condition) in self.filters.items():
            if (params or {}).get(name) is not None:
                slots[slot].append(condition)
        return sql.format(**{slot: " AND ".join(conditions) or "1 = 1" for slot, conditions in slots.items()})

    def statement(self, dialect: str = "postgresql", params: Mapping[str, Any] | None = None) -> Any:
        """The SQLAlchemy statement: typed datetime parameters, typed time and boolean result columns."""
        sql = self.sql_for(dialect, params)
        statement: TextClause = text(sql)
        bound = [p for p in self.time_params if re.search(rf":{p}\b", sql)]  # a filter left out binds nothing
        if bound:
            statement = statement.bindparams(*(bindparam(p, type_=UTCDateTime()) for p in bound))
        lists = [p for p in self.list_params if re.search(rf":{p}\b", sql)]
        if lists:
            statement = statement.bindparams(*(bindparam(p, expanding=True) for p in lists))
        columns = {c: UTCDateTime() for c in self.time_columns} | {c: Boolean() for c in self.bool_columns}
        return statement.columns(**columns) if columns else statement

    def params(self, **params: Any) -> dict[str, Any]:
        values = {**self.defaults, **params}
        now = values.pop("now", None) or datetime.now(timezone.utc)
        grace_s = values.pop("grace_s", None)
        if "overdue_before" in self.time_params and values.get("overdue_before") is None:
            values["overdue_before"] = overdue_before(now, DEFAULT_GRACE_S if grace_s is None else grace_s)
        return values


def db_url(environ: Mapping[str, str] | None = None, config: str | Path | None = None) -> str:
    """The results database to analyse: the settings' store.url (INSPECTION__STORE__URL, or `config`'s; default
    the demo's SQLite file)."""
    return load_settings(config, environ=None if environ is None else dict(environ)).store.url


def engine_from_env(environ: Mapping[str, str] | None = None, config: str | Path | None = None) -> Engine:
    return create_engine_for(db_url(environ, config))


def execute(conn: Connection, query: Query, **params: Any) -> CursorResult[Any]:
    """Execute `query` (bind parameters: its defaults, overridden by `params`)."""
    values = query.params(**params)
    return conn.execute(query.statement(conn.dialect.name, values), values)


def run(conn: Connection, query: Query, **params: Any) -> list[Any]:
    """Execute `query` (as `execute`); all rows."""
    return list(execute(conn, query, **params).all())


def read_df(engine: Engine, query: Query, **params: Any) -> pd.DataFrame:
    """`query` as a DataFrame, time columns as UTC datetimes, boolean columns as pandas booleans."""
    pd = require("pandas", "analysis", "a DataFrame of the results")

    with engine.connect() as conn:
        result = execute(conn, query, **params)
        columns = list(result.keys())
        df = pd.DataFrame([tuple(r) for r in result.all()], columns=columns)
    for column in query.time_columns:
        df[column] = pd.to_datetime(df[column], utc=True)
    for column in query.bool_columns:
        df[column] = df[column].map(lambda v: pd.NA if v is None or pd.isna(v) else bool(v)).astype("boolean")
    return df
