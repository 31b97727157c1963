"""Demand urgency of materials by the entropy weight method, and the shortage adjustment coefficient.

Five indicators describe each material. The entropy weight method gives more weight to an indicator
whose values differ more across the materials (it tells them apart), normalises each indicator to
[0, 1] with "1 = most urgent", and scores each material as the weighted sum, in [0, 1]. The shortage
of a material is then weighted in the plan's objective by theta = f(urgency).

The source defines f only qualitatively: f(0) = 1, increasing, and convex ("the amplification grows
faster as urgency grows"). It gives no closed form, so the default ``exp`` (theta = e^u) is our
choice, and :data:`THETA_FUNCTIONS` offers alternatives that satisfy the same three properties.

Pure numpy: no solver, no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from optimizer.errors import ScenarioError
from vreserve.scenario_names import DEFAULT_THETA

#: Indicator name -> True when a HIGHER value means MORE urgent (the names a scenario file may use
#: are the contract's, :data:`vreserve.scenario_names.INDICATOR_NAMES`).
INDICATORS: dict[str, bool] = {
    "consumption_rate": True,    # consumed faster -> more urgent
    "reproduction_rate": False,  # restocked/produced faster -> LESS urgent
    "durability": True,          # 1 durable (e.g. a ventilator), 0 consumable
    "danger_to_life": True,      # 1..5
    "irreplaceability": True,    # 1..5
}

#: theta = f(u): each f(0) = 1, increasing and convex on [0, 1] (one per name a scenario file may
#: give, :data:`vreserve.scenario_names.THETA_NAMES`).
THETA_FUNCTIONS: dict[str, Callable[[float], float]] = {
    "exp": lambda u: math.exp(u),                 # default
    "exp2": lambda u: math.exp(2.0 * u),          # stronger amplification: theta in [1, 7.39]
    "quadratic": lambda u: 1.0 + u + u * u,       # theta in [1, 3]
    "square": lambda u: (1.0 + u) ** 2,           # theta in [1, 4]
    "linear": lambda u: 1.0 + u,                  # convex in the weak sense (the mildest choice)
}


class UrgencyError(ScenarioError):
    """Indicators missing, unknown or not finite; or an unknown theta function."""


@dataclass(frozen=True)
class Urgency:
    """The outcome of the urgency computation.

    weights: indicator name -> entropy weight (sum 1, or all 0 when no indicator varies);
    scores: material id -> urgency u in [0, 1]; coefficients: material id -> theta = f(u).
    """

    weights: dict[str, float]
    scores: dict[str, float]
    coefficients: dict[str, float]

    def to_json_dict(self) -> dict[str, dict[str, float]]:
        return {"weights": dict(self.weights), "scores": dict(self.scores),
                "coefficients": dict(self.coefficients)}


def theta_function(name: str) -> Callable[[float], float]:
    try:
        return THETA_FUNCTIONS[name]
    except KeyError:
        raise UrgencyError(f"unknown theta function {name!r}; known: {', '.join(sorted(THETA_FUNCTIONS))}") from None


def entropy_weights(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entropy weights of the columns of a (materials x indicators) matrix already oriented so that
    higher = more urgent. Returns (weights, normalised matrix x').

    A column with max == min carries no information: x' = 0 there and its weight is 0 (its entropy
    is taken as 1). With a single material every column is constant, so every weight is 0.
    """
    x = np.asarray(matrix, dtype=float)
    n, k = x.shape
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = hi - lo
    varies = span > 0
    xn = np.zeros_like(x)
    xn[:, varies] = (x[:, varies] - lo[varies]) / span[varies]
    entropy = np.ones(k)
    if n > 1 and varies.any():
        col = xn[:, varies]
        p = col / col.sum(axis=0)  # the column max is 1, so the sum is >= 1
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)  # 0 ln 0 = 0
        entropy[varies] = -plogp.sum(axis=0) / math.log(n)
    divergence = 1.0 - entropy
    total = divergence.sum()
    weights = divergence / total if total > 0 else np.zeros(k)
    return weights, xn


def _get(material: Any, key: str) -> Any:
    if isinstance(material, Mapping):
        return material.get(key)
    return getattr(material, key, None)


def urgency(materials: Sequence[Any], theta: str = DEFAULT_THETA) -> Urgency:
    """Entropy-weight urgency of ``materials`` (``Material`` objects or mappings with ``id``,
    ``indicators`` and optional ``urgency`` / ``theta`` overrides).

    A material that gives ``urgency`` uses it instead of the computed score; one that gives ``theta``
    uses it as its coefficient. Indicators may be omitted only by materials that give an override;
    the entropy weights are computed over the materials that give all five indicators.
    """
    f = theta_function(theta)
    ids = [str(_get(m, "id")) for m in materials]
    rows: list[list[float]] = []
    indexed: list[int] = []
    for i, m in enumerate(materials):
        ind = _get(m, "indicators")
        has_override = _get(m, "urgency") is not None or _get(m, "theta") is not None
        if ind is None or len(ind) == 0:
            if has_override:
                continue
            raise UrgencyError(f"material {ids[i]!r}: indicators missing (need {', '.join(INDICATORS)}), "
                               "or give 'urgency' or 'theta' directly")
        unknown = sorted(set(ind) - set(INDICATORS))
        if unknown:
            raise UrgencyError(f"material {ids[i]!r}: unknown indicator(s) {unknown}; known: {list(INDICATORS)}")
        missing = [name for name in INDICATORS if name not in ind or ind[name] is None]
        if missing:
            raise UrgencyError(f"material {ids[i]!r}: indicator(s) missing: {missing}")
        row = []
        for name in INDICATORS:
            try:
                v = float(ind[name])
            except (TypeError, ValueError):
                raise UrgencyError(f"material {ids[i]!r}: indicator {name} is not a number: {ind[name]!r}") from None
            if not math.isfinite(v):
                raise UrgencyError(f"material {ids[i]!r}: indicator {name} is not finite: {v}")
            row.append(v if INDICATORS[name] else -v)  # "lower = more urgent": (max - x)/(max - min)
        rows.append(row)
        indexed.append(i)
    names = list(INDICATORS)
    scores: dict[str, float] = {mid: 0.0 for mid in ids}
    if rows:
        w, xn = entropy_weights(np.array(rows))
        weights = {name: float(v) for name, v in zip(names, w)}
        for row_i, i in enumerate(indexed):
            scores[ids[i]] = float(np.clip(xn[row_i] @ w, 0.0, 1.0))
    else:
        weights = {name: 0.0 for name in names}
    coefficients: dict[str, float] = {}
    for i, m in enumerate(materials):
        u_override = _get(m, "urgency")
        if u_override is not None:
            scores[ids[i]] = float(u_override)
        t_override = _get(m, "theta")
        coefficients[ids[i]] = float(t_override) if t_override is not None else float(f(scores[ids[i]]))
    return Urgency(weights=weights, scores=scores, coefficients=coefficients)
