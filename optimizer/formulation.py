"""The multi-period dispatch MILP as a DPP-parameterised CVXPY problem: STRUCTURE fixed, NUMBERS as parameters.

- Primary: minimise sum theta_m * s[k,m,t] with the shortage substituted out: sum_j y <= D and
  s = D - sum_j y, so the solver minimises theta.D - theta.y. The constant theta.D enters through a
  column fixed at 1, so the solver's relative gap IS the gap on the primary objective.
- Receipts of period t are deliverable from t+1: sum_k y[j,m,t] <= I[j,m,t-1].
- Arc binaries only where a constraint needs them (max deliveries, minimum lot), linked by
  aggregated rows sum_m y[d,m,t] <= U[d,t] b[d,t] with the tightest simple U; ``b_open`` closes arcs
  (a fix-and-optimize neighbourhood) without changing the structure.
- Second stage (fewest arcs used) keeps every rescue centre's deliveries at the primary plan's, so the
  primary objective is exactly unchanged (never trading shortage).

Re-solving with new numbers goes through CVXPY's public path: set ``Parameter.value`` and call
``Problem.get_problem_data`` again; CVXPY caches the parameter -> data map of a DPP problem and only
re-applies it. That map is returned in the data (``data["param_prob"]``); we read the column of each
variable from it (``var_id_to_col``) to split solver columns into variables and back.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cvxpy as cp
import cvxpy.settings as cps
import numpy as np

from optimizer.index import Index, Numbers, Structure


@dataclass(frozen=True)
class CompiledProblem:
    """A stage compiled for the numbers currently in its parameters."""

    data: dict  # CVXPY's problem data for the HiGHS solver (c, A, b, dims, bounds, integer columns)
    param_prog: object  # CVXPY's cached parameter -> data map (the same object on every re-compile)
    seconds: float  # compile (first time) or parameter update (later), s

    @property
    def shape(self) -> tuple[int, int]:
        return self.data[cps.A].shape

    def split(self, columns: np.ndarray) -> dict[int, np.ndarray]:
        """Solver columns -> values per CVXPY variable id (a variable with no entries, e.g. the supply
        flows of a scenario without supply sites, is not in the compiled problem: an empty array)."""
        values = {v.id: columns[self.param_prog.var_id_to_col[v.id]:][:v.size] for v in self.param_prog.variables}
        return _EmptyDefault(values)

    def columns(self, by_var: dict[int, np.ndarray]) -> np.ndarray:
        """Values per CVXPY variable id -> a solver column vector (a MIP start)."""
        x = np.zeros(self.param_prog.x.size)
        for v in self.param_prog.variables:
            off = self.param_prog.var_id_to_col[v.id]
            x[off:off + v.size] = by_var[v.id]
        return x


class _EmptyDefault(dict):
    """Values per variable id; a variable CVXPY left out of the problem (no entries) reads as empty."""

    def __missing__(self, key: int) -> np.ndarray:
        return np.zeros(0)


class Stage:
    """One CVXPY problem; ``compile`` re-applies the parameters through CVXPY's cache."""

    def __init__(self, problem: cp.Problem):
        self.problem = problem
        self.last: CompiledProblem | None = None

    def compile(self) -> CompiledProblem:
        t0 = time.perf_counter()
        data, _chain, _inverse = self.problem.get_problem_data("HIGHS", enforce_dpp=True)
        self.last = CompiledProblem(data, data[cps.PARAM_PROB], time.perf_counter() - t0)
        return self.last

    def param_prog(self):
        """CVXPY's cached parameter map (None before the first compile)."""
        return None if self.last is None else self.last.param_prog


class Formulation:
    """Variables, parameters and the two stages of one structure."""

    def __init__(self, structure: Structure):
        self.structure = structure
        ix = self.index = Index(structure)
        self.params: dict[str, cp.Parameter] = {}
        self.x = cp.Variable(ix.n_x, integer=True, bounds=[0, None], name="x")
        self.y = cp.Variable(ix.n_y, integer=True, bounds=[0, None], name="y")
        self.inv = cp.Variable(ix.n_i, bounds=[0, None], name="I")
        self.one = cp.Variable(name="one")
        self.needs_arc_binaries = structure.has_min_lot or len(ix.limited) > 0
        self.b = cp.Variable(ix.nd * ix.T, boolean=True, name="b") if self.needs_arc_binaries else None
        cons = self._flow_rows() + self._arc_rows()
        self.primary_expr = self._param("theta_demand", ()) * self.one - self._param("theta_y", ix.n_y) @ self.y
        self.stage1 = Stage(cp.Problem(cp.Minimize(self.primary_expr), cons))
        self.a = cp.Variable(ix.ns * ix.T, boolean=True, name="a")
        self.b2 = self.b if self.b is not None else cp.Variable(ix.nd * ix.T, boolean=True, name="b")
        self.stage2 = Stage(cp.Problem(cp.Minimize(cp.sum(self.a) + cp.sum(self.b2)), cons + self._arc_stage_rows()))

    def _param(self, name: str, shape) -> cp.Parameter:
        if name not in self.params:
            self.params[name] = cp.Parameter(shape, name=name, nonneg=True)
        return self.params[name]

    def _flow_rows(self) -> list:
        """Stock balance, deliverable stock, demand, supply, stock rules, capacity, on hand, budget."""
        ix, p = self.index, self._param
        x, y, inv = self.x, self.y, self.inv
        prev = ix.lag @ inv + ix.at_start @ p("initial", ix.J * ix.M)
        cons = [
            self.one == 1,
            inv == prev - ix.issues @ y + ix.receipts @ x,
            ix.issues @ y <= prev,
            ix.delivered @ y <= p("demand", ix.K * ix.M * ix.T),
            ix.supply_rows @ x <= p("supply", ix.W * ix.M * ix.T),
            inv >= p("safety", ix.n_i),
            inv <= p("max_inventory", ix.n_i),
            ix.stock_rows @ inv <= p("capacity", ix.J * ix.T),
        ]
        if self.structure.has_on_hand:
            cons.append(ix.on_hand_rows @ x <= p("on_hand", ix.W * ix.M))
        if self.structure.has_budget:
            cons.append(p("price_x", ix.n_x) @ x <= p("budget", ()))  # scaled in set_numbers
        return cons

    def _arc_rows(self) -> list:
        """Arc binaries linked to deliveries; minimum lot; delivery limits per centre and period."""
        if self.b is None:
            return []
        ix, p, b = self.index, self._param, self.b
        cons = [ix.arc_y @ self.y <= cp.multiply(p("delivery_bound", ix.nd * ix.T), b),
                b <= p("b_open", ix.nd * ix.T)]  # 1 = may be used; 0 closes an arc (a neighbourhood)
        if self.structure.has_min_lot:
            cons.append(ix.arc_y @ self.y >= p("min_lot", ()) * b)
        if len(ix.limited):
            cons.append(ix.deliveries_per_centre @ b <= p("max_deliveries", len(ix.limited) * ix.T))
        return cons

    def _arc_stage_rows(self) -> list:
        """Second stage: arc indicators, and every rescue centre's deliveries fixed to a target."""
        ix, p = self.index, self._param
        cons = [ix.arc_x @ self.x <= cp.multiply(p("supply_bound", ix.ns * ix.T), self.a)]
        if self.b is None:
            cons.append(ix.arc_y @ self.y <= cp.multiply(p("delivery_bound", ix.nd * ix.T), self.b2))
        self.params["delivered_target"] = cp.Parameter(ix.K * ix.M * ix.T, name="delivered_target")
        cons.append(ix.delivered @ self.y == self.params["delivered_target"])
        return cons

    def set_numbers(self, n: Numbers) -> None:
        """Put a scenario's numbers into the parameters (every arc open, no delivery target)."""
        ix, P = self.index, self.params
        P["initial"].value = n.initial.reshape(-1)
        P["demand"].value = ix.demand_vec(n)
        P["supply"].value = ix.supply_vec(n)
        if "on_hand" in P:
            P["on_hand"].value = n.on_hand.reshape(-1)
        P["safety"].value = ix.per_period(n.safety)
        P["max_inventory"].value = ix.per_period(n.max_inventory)
        P["capacity"].value = np.repeat(n.capacity, ix.T)
        if "budget" in P:
            px = ix.price_x(n)
            pos = px[px > 0]
            # divide the row by the geometric mean of the prices: coefficients around 1 (not 1e-6)
            scale = float(np.exp(np.log(pos).mean())) if pos.size else 1.0
            P["budget"].value = float(n.budget) / scale
            P["price_x"].value = px / scale
        P["delivery_bound"].value = ix.delivery_bound(n)
        if "b_open" in P:
            P["b_open"].value = np.ones(ix.nd * ix.T)
        if "min_lot" in P:
            P["min_lot"].value = float(n.min_lot)
        if "max_deliveries" in P:
            P["max_deliveries"].value = ix.max_deliveries_vec(n)
        P["supply_bound"].value = ix.supply_bound(n)
        P["theta_y"].value = ix.theta_y(n)
        P["theta_demand"].value = ix.theta_demand(n)
        P["delivered_target"].value = np.zeros(ix.K * ix.M * ix.T)

    def open_arcs(self, open_: np.ndarray) -> None:
        """Only these delivery arcs ([arcs, periods] booleans) may be used in the next compile."""
        self.params["b_open"].value = np.asarray(open_, dtype=float).reshape(-1)
