"""The demo's registry: its stock of the scenario pack's materials sized to the pack's own supply."""
from __future__ import annotations

import dataclasses

from dispatcher.live import as_series


def pack_supply(base: dict) -> dict[str, float]:
    """Units per material the scenario's own supply sites offer over its whole horizon."""
    out: dict[str, float] = {}
    for site in base.get("supply_sites") or []:
        for m, series in (site.get("supply") or {}).items():
            out[m] = out.get(m, 0.0) + sum(as_series(series, base["periods"]))
    return out


def size_registry_to_pack(registry, base: dict, region: str):
    """The registry with each pack material's contracted stock in ``region`` sized to the pack's supply.

    Why: the generated registry holds city-scale stock (about 50x the wuhan pack's demand at
    300 sites), so nothing would ever be short and urgency would never matter. The source scenario
    is short by design: its supply sites plus the centres' usable stock cover 90 % of the 10-period
    demand (optimizer/packs.py). Here the live registry REPLACES the pack's supply sites, so each
    material's contracted quantity over the region's sites is scaled to what the pack's supply
    sites offer over the horizon (sum of their supply series): live supply + centres' usable stock
    ~ 90 % of the demand, as in the source. The fleet then starts each site at 95-110 % of contract
    and the plan counts min(reported, contracted) x trust, so live supply lands a little under the
    target (more so for few-unit materials such as ventilators, whose readings are whole units).

    Each material keeps the generated registry's spread over sites (proportional scaling, whole
    units by largest remainder, the total hits the target exactly); a site left with 0 units of a
    material loses that contract. Materials outside the pack are left alone. Returns the new
    registry and per material {"target", "before", "after", "sites"}.
    """
    targets = pack_supply(base)
    sites = dict(registry.sites)
    figures = {}
    for m, target in sorted(targets.items()):
        holders = sorted(sid for sid, st in sites.items() if st.region == region and m in st.materials)
        before = sum(float(sites[sid].materials[m].contracted_qty) for sid in holders)
        if not holders or before <= 0:
            figures[m] = {"target": target, "before": before, "after": 0.0, "sites": 0}
            continue
        goal = int(round(target))
        exact = {sid: float(sites[sid].materials[m].contracted_qty) * goal / before for sid in holders}
        whole = {sid: int(v) for sid, v in exact.items()}
        rest = goal - sum(whole.values())
        for sid in sorted(holders, key=lambda k: (-(exact[k] - whole[k]), k))[:rest]:
            whole[sid] += 1
        for sid in holders:
            mats = dict(sites[sid].materials)
            if whole[sid] > 0:
                mats[m] = dataclasses.replace(mats[m], contracted_qty=float(whole[sid]))
            else:
                del mats[m]
            sites[sid] = dataclasses.replace(sites[sid], materials=mats)
        figures[m] = {"target": target, "before": before, "after": float(sum(whole.values())),
                      "sites": sum(1 for v in whole.values() if v > 0)}
    return dataclasses.replace(registry, sites=sites), figures
