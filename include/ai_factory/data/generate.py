"""Synthetic credit-default data: one Parquet partition per day, deterministic per date.

The signal is non-linear (thresholds, a U-shaped age effect, interactions) and the positive
class is ~12-16% of rows. Knobs: rows per day, a drift start date and kind, and corruption
injection for exercising the data-quality gate.

Drift kinds:
* ``covariate`` — the inputs move (incomes fall, scores drop, more business/medical loans,
  higher utilisation) while the rule that maps inputs to defaults stays the same.
* ``concept`` — the inputs keep their distribution but the rule changes (debt-to-income and
  interest rate matter much more, credit score less), so yesterday's model gets worse.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

import numpy as np
import pandas as pd

from ai_factory.storage import DataLake, Zone, as_date

log = logging.getLogger(__name__)

DATA_FILE = "part-0.parquet"


class DriftKind(StrEnum):
    NONE = "none"
    COVARIATE = "covariate"
    CONCEPT = "concept"


class Corruption(StrEnum):
    NULLS = "nulls"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_CATEGORY = "unknown_category"
    MISSING_COLUMN = "missing_column"
    WRONG_DTYPE = "wrong_dtype"
    EMPTY_FILE = "empty_file"
    UNREADABLE_FILE = "unreadable_file"


@dataclass(frozen=True)
class DriftConfig:
    start: date | None = None
    kind: DriftKind = DriftKind.NONE
    strength: float = 1.0

    def active(self, ds: date) -> bool:
        return self.kind != DriftKind.NONE and self.start is not None and ds >= self.start


EMPLOYMENT = ["salaried", "self_employed", "unemployed", "retired", "student"]
HOME = ["rent", "own", "mortgage", "other"]
PURPOSE = ["debt_consolidation", "home_improvement", "business", "education", "medical", "car", "other"]
REGION = ["north", "south", "east", "west", "central"]
EDUCATION = ["high_school", "bachelor", "master", "doctorate", "other"]


def _rng(ds: date, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, ds.toordinal()])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_day(ds: str | date, rows: int, seed: int = 0, drift: DriftConfig | None = None) -> pd.DataFrame:
    """One day of applications; the same (ds, rows, seed, drift) always gives the same frame."""
    day = as_date(ds)
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    drift = drift or DriftConfig()
    rng = _rng(day, seed)
    n = rows
    cov = drift.strength if drift.active(day) and drift.kind == DriftKind.COVARIATE else 0.0
    concept = drift.strength if drift.active(day) and drift.kind == DriftKind.CONCEPT else 0.0

    age = np.clip(rng.gamma(6.0, 6.5, n) + 18 - 6 * cov, 18, 100).round().astype("int64")
    emp_p = np.array([0.62, 0.16, 0.06, 0.10, 0.06])
    if cov:
        emp_p = emp_p + cov * np.array([-0.15, 0.05, 0.08, 0.0, 0.02])
    employment = rng.choice(EMPLOYMENT, n, p=emp_p / emp_p.sum())
    education = rng.choice(EDUCATION, n, p=[0.35, 0.35, 0.18, 0.04, 0.08])
    edu_boost = pd.Series(education).map(
        {"high_school": 0.0, "bachelor": 0.25, "master": 0.4, "doctorate": 0.55, "other": 0.05}
    ).to_numpy()
    emp_income = pd.Series(employment).map(
        {"salaried": 1.0, "self_employed": 1.1, "unemployed": 0.25, "retired": 0.6, "student": 0.3}
    ).to_numpy()
    income = np.exp(rng.normal(10.9 + edu_boost - 0.35 * cov, 0.5, n)) * emp_income
    income = np.clip(income, 0, 5_000_000).round(2)

    purpose_p = np.array([0.32, 0.14, 0.10, 0.08, 0.08, 0.18, 0.10])
    if cov:
        purpose_p = purpose_p + cov * np.array([-0.08, -0.04, 0.10, 0.0, 0.06, -0.06, 0.02])
    purpose = rng.choice(PURPOSE, n, p=purpose_p / purpose_p.sum())
    loan = np.clip(np.exp(rng.normal(9.4 + 0.25 * cov, 0.8, n)), 500, 1_000_000).round(2)
    term = rng.choice([12, 24, 36, 48, 60, 84, 120, 180, 240, 360], n,
                      p=[0.06, 0.12, 0.30, 0.14, 0.20, 0.06, 0.04, 0.03, 0.02, 0.03]).astype("int64")
    score = np.clip(rng.normal(690 - 45 * cov, 75, n), 300, 850).round().astype("int64")
    rate = np.clip(4 + (850 - score) / 550 * 22 + rng.normal(0, 2.0, n), 0.5, 39.9).round(2)
    dti = np.clip(loan / np.maximum(income, 1000) * 0.35 + rng.gamma(2.0, 0.09, n), 0, 10).round(4)
    open_acc = np.clip(rng.poisson(7 + 2 * cov, n), 0, 80).astype("int64")
    delinq = np.clip(rng.poisson(np.where(score < 600, 1.2, 0.15) + 0.3 * cov), 0, 40).astype("int64")
    util = np.clip(rng.beta(2.0, 3.2 - 1.0 * cov, n) * 1.2, 0, 2).round(4)
    months_emp = np.clip(rng.gamma(2.0, 30.0, n) * (employment != "unemployed"), 0, 720).round()
    months_emp_s = pd.Series(months_emp, dtype="Int64")
    months_emp_s[rng.random(n) < 0.04] = pd.NA
    savings = np.clip(np.exp(rng.normal(8.5 + edu_boost, 1.4, n)) * (1 - 0.5 * cov), 0, 10_000_000).round(2)
    savings_s = pd.Series(savings, dtype="float64")
    savings_s[rng.random(n) < 0.07] = np.nan
    dependents = np.clip(rng.poisson(1.1, n), 0, 15).astype("int64")
    prev = np.clip(rng.poisson(2.2, n), 0, 60).astype("int64")
    late = np.clip(rng.poisson(np.where(util > 0.8, 1.5, 0.3) + 0.4 * cov), 0, 36).astype("int64")
    home = rng.choice(HOME, n, p=[0.38, 0.22, 0.35, 0.05])
    region = rng.choice(REGION, n, p=[0.2, 0.25, 0.2, 0.2, 0.15])
    cosigner = rng.random(n) < 0.12

    # The rule that maps inputs to default risk (non-linear on purpose).
    w_score = 1.0 - 0.6 * concept
    w_dti = 1.0 + 2.0 * concept
    logit = (
        -2.75
        + w_score * (-(score - 680) / 60.0)
        + w_score * 0.9 * (score < 580)
        + w_dti * 1.4 * np.tanh((dti - 0.45) * 3.0)
        + 0.9 * np.maximum(util - 0.75, 0) * 3.0
        + 0.35 * np.minimum(delinq, 4)
        + 0.22 * np.minimum(late, 5)
        + 0.04 * (age - 42) ** 2 / 25.0
        + 1.1 * ((dti > 0.6) & (util > 0.7))
        + (0.06 + 0.08 * concept) * (rate - 12)
        + 0.9 * (employment == "unemployed") * (loan / np.maximum(income, 1000) > 0.5)
        + 0.45 * (employment == "student")
        - 0.35 * (home == "own")
        + 0.25 * (purpose == "business")
        + 0.3 * (purpose == "medical")
        - 0.5 * cosigner
        - 0.25 * np.log1p(np.nan_to_num(savings_s.to_numpy(dtype="float64"), nan=0.0)) / 4.0
        + 0.12 * (term >= 120)
        + rng.normal(0, 0.35, n)
    )
    default = (rng.random(n) < _sigmoid(logit)).astype("int64")

    df = pd.DataFrame({
        "age": age,
        "annual_income": income,
        "loan_amount": loan,
        "loan_term_months": term,
        "interest_rate": rate,
        "credit_score": score,
        "debt_to_income": dti,
        "num_open_accounts": open_acc,
        "num_delinquencies_2y": delinq,
        "credit_utilization": util,
        "months_employed": months_emp_s,
        "savings_balance": savings_s,
        "num_dependents": dependents,
        "previous_loans": prev,
        "late_payments_12m": late,
        "employment_type": employment,
        "home_ownership": home,
        "loan_purpose": purpose,
        "region": region,
        "education": education,
        "has_cosigner": cosigner,
        "default": default,
        "application_id": [f"{day:%Y%m%d}-{i:07d}" for i in range(n)],
    })
    return df


def to_parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def corrupt(df: pd.DataFrame, kind: Corruption | str, seed: int = 0) -> bytes:
    """The bytes of a landing file broken in the named way (for exercising the quality gate)."""
    kind = Corruption(kind)
    rng = np.random.default_rng(seed)
    bad = df.copy()
    n = len(bad)
    idx = rng.choice(n, size=max(1, n // 20), replace=False) if n else np.array([], dtype=int)
    if kind == Corruption.NULLS:
        bad["credit_score"] = bad["credit_score"].astype("Int64")
        bad.loc[idx, "credit_score"] = pd.NA
    elif kind == Corruption.OUT_OF_RANGE:
        bad.loc[idx, "age"] = 250
    elif kind == Corruption.UNKNOWN_CATEGORY:
        bad.loc[idx, "region"] = "atlantis"
    elif kind == Corruption.MISSING_COLUMN:
        bad = bad.drop(columns=["credit_score"])
    elif kind == Corruption.WRONG_DTYPE:
        bad["annual_income"] = bad["annual_income"].map(lambda v: f"{v:,.0f} USD")
    elif kind == Corruption.EMPTY_FILE:
        return b""
    elif kind == Corruption.UNREADABLE_FILE:
        return b"PAR1" + rng.bytes(2048) + b"this is not a parquet file"
    return to_parquet_bytes(bad)


def write_day(
    lake: DataLake,
    ds: str | date,
    rows: int,
    seed: int = 0,
    drift: DriftConfig | None = None,
    corruption: Corruption | str | None = None,
) -> str:
    """Land one day under ``landing/ds=…`` (replacing that day only). Returns the partition path."""
    day = as_date(ds)
    df = generate_day(day, rows, seed=seed, drift=drift)
    data = corrupt(df, corruption, seed=day.toordinal()) if corruption else to_parquet_bytes(df)
    path = lake.replace_partition(Zone.LANDING, day, {DATA_FILE: data})
    log.info("landed %s rows for ds=%s%s at %s", rows, day, f" (corrupted: {corruption})" if corruption else "", path)
    return path


def date_range(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"end date {end} is before start date {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
