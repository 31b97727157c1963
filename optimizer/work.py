"""Deterministic work limits: what makes an anytime plan a pure function of its inputs.

A plan cut short by the wall clock depends on the machine's speed and load: a restarted dispatcher
(or a rerun on a faster machine) could publish a different plan for the same period. So every stage
of :func:`optimizer.anytime.plan_anytime` is bounded by WORK, counted in units that do not depend on
the clock: which stages run, how many branch-and-bound nodes each MILP may explore (HiGHS's
``mip_max_nodes``) and how many materials the decomposition solves. The wall clock stays only as a
safety net: every solver call also gets what is left of the budget as its time limit, and a plan
that the clock stopped says so (``summary["stopped_by_clock"]``).

The limits are a pure function of the scenario's size and the budget (:func:`work_for_budget`), set
from measurements on the development machine (2 shared cores, load average 5-14) so that the work
fits the budget there with a margin; a slower machine meets the safety net sooner, which is then
reported, never hidden.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

#: Above this many model columns the full MILP is not built in an anytime plan (province size:
#: building and compiling it took minutes at load average 11-16 and HiGHS overran its limit on it).
PROVINCE_COLUMNS = 200_000
#: Branch-and-bound nodes per second of budget for a neighbourhood / warm-started MILP. Chosen, not
#: fitted: on the measured models the root node (presolve, cuts, heuristics) dominates, e.g. 15 s for
#: the full paper-size MILP with limits with 100 or 1,200 nodes alike (load average 10), so the node
#: limit bounds the tree search and the clock stays the safety net for the root.
NODES_PER_BUDGET_S = 40
#: Budget seconds one material of the decomposition needs at province size (LP + RENS measured
#: 1.7-5 s at load average 8-12; all 20 in 47.8 s), and the share of the budget the decomposition
#: may plan to use (the rest is the greedy plan, the merge and the independent check before it).
SECONDS_PER_MATERIAL = 3.0
DECOMPOSITION_SHARE = 0.75
#: Budget seconds per 1,000 model columns below which the warm-started full MILP is not planned (the
#: fix-and-optimize neighbourhood still is). City size with delivery limits (41,000 columns): the
#: clock stopped it in a 60 s budget without an improvement (benchmark, 2026-12-01 07:29 UTC, load
#: average 8-10), so it needs 82 s or more; the packs (~1,000 columns) about 2 s.
FULL_MILP_S_PER_KCOLUMN = 2.0
#: Budget seconds per 1,000 model columns below which round 2 (the stock-fleet bound, 1.4-8 s, and the
#: neighbourhood on the union of the fleet LP's and the stock-fleet LP's arcs, warm-started, 10-26 s, at
#: city size with delivery limits, 41,000 columns, load average 5-10, 2026-12-01 10:40 UTC) is not
#: planned: 0.5 s (20 s at city size; the dispatcher's 7.5 s budget keeps round 1 only).
NEIGHBOURHOOD_S_PER_KCOLUMN = 0.5
#: The same for the strengthened LP bound (``optimizer.cuts``): 12-15 s at city size at load average
#: 1-5, 35 s at 12 (2026-12-01 10:30 UTC), on top of the neighbourhoods: 1.0 s (41 s at city size).
STRENGTHENED_LP_S_PER_KCOLUMN = 1.0


@dataclass(frozen=True)
class WorkLimits:
    """How much work each anytime stage may do, independent of the clock.

    ``rounds``: improvement rounds after the greedy plans and the quick bounds (0: none; 1: the
    fix-and-optimize MILP on the fleet LP's arcs with delivery limits, the LP bound + RENS solve or
    the decomposition without; with limits, 2: then fix-and-optimize on the union of the fleet LP's
    and the stock-fleet LP's arcs, warm-started; 3: then the strengthened LP bound; 4: then the full
    MILP warm-started from the best plan);
    ``mip_nodes``: branch-and-bound nodes per MILP solve (HiGHS's ``mip_max_nodes``);
    ``materials``: single-material MILPs the decomposition solves, most at stake first (None: all).
    """

    rounds: int = 4
    mip_nodes: int = 400
    materials: int | None = None

    def __post_init__(self) -> None:
        if self.rounds < 0 or self.mip_nodes < 1 or (self.materials is not None and self.materials < 0):
            raise ValueError(f"work limits out of range: rounds {self.rounds} (>= 0), mip_nodes "
                             f"{self.mip_nodes} (>= 1), materials {self.materials} (>= 0 or None)")

    def highs_options(self) -> dict[str, int]:
        """The HiGHS options that enforce these limits in one MILP solve."""
        return {"mip_max_nodes": int(self.mip_nodes)}

    def to_json_dict(self) -> dict[str, int | None]:
        return {"rounds": self.rounds, "mip_nodes": self.mip_nodes, "materials": self.materials}


def work_for_budget(budget_s: float, columns: int, materials: int, limited: bool = False) -> WorkLimits:
    """The work limits that fit ``budget_s`` on the development machine for a model of ``columns``
    columns and ``materials`` materials (``limited``: with delivery limits or a minimum lot): a pure
    function, so the same budget gives the same plan."""
    budget = max(float(budget_s), 0.0)
    nodes = max(1, int(NODES_PER_BUDGET_S * budget))
    if columns > PROVINCE_COLUMNS and limited:
        from optimizer.province_limited import province_limited_work  # it imports this module
        return province_limited_work(budget, materials)
    if columns > PROVINCE_COLUMNS:
        solved = min(materials, int(math.floor(budget * DECOMPOSITION_SHARE / SECONDS_PER_MATERIAL)))
        return WorkLimits(rounds=1 if solved > 0 else 0, mip_nodes=nodes, materials=solved)
    kcolumns = columns / 1000
    per_round = (NEIGHBOURHOOD_S_PER_KCOLUMN, STRENGTHENED_LP_S_PER_KCOLUMN, FULL_MILP_S_PER_KCOLUMN)
    rounds = 0 if budget <= 0 else 1 + sum(budget >= s * kcolumns for s in per_round)
    return WorkLimits(rounds=rounds, mip_nodes=nodes, materials=None)

