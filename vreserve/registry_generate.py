"""A realistic generated registry (``vreserve registry generate``): the default catalogue and sites
over a city-sized grid, deterministic per seed."""
from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Iterable

from vreserve.registry import Material, Registry, RegistryError, Site, SiteMaterial, validate
from vreserve.schemas.dispatch import Contact

#: The default catalogue: 20 materials; the Wuhan scenario uses medicine, medical_alcohol,
#: ventilator and pork (ids fixed). Prices are in minor units (fen).
CATALOGUE: tuple[Material, ...] = (
    # id, name, unit, class, consumable, reference price (fen), handling, kg per unit, m3 per unit
    # (weights and volumes packed for transport: typical figures, not a supplier's data sheet)
    Material("medicine", "Medicine (antivirals, boxed)", "box", "medical", True, 8_000, "ambient", 0.25, 0.0008),
    Material("medical_alcohol", "Medical alcohol 75%", "litre", "medical", True, 2_500, "flammable", 0.95, 0.0012),
    Material("ventilator", "Ventilator", "unit", "medical", False, 6_000_000, "fragile", 25.0, 0.15),
    Material("pork", "Frozen pork", "kg", "living", True, 3_000, "frozen", 1.0, 0.0012),
    Material("n95_mask", "N95 respirator", "piece", "protective", True, 600, "ambient", 0.01, 0.0002),
    Material("surgical_mask", "Surgical mask", "piece", "protective", True, 80, "ambient", 0.004, 0.00005),
    Material("protective_suit", "Medical protective suit", "piece", "protective", True, 15_000, "ambient", 0.3, 0.002),
    Material("goggles", "Protective goggles", "piece", "protective", False, 3_000, "fragile", 0.1, 0.001),
    Material("nitrile_gloves", "Nitrile gloves (pair)", "pair", "protective", True, 100, "ambient", 0.01, 0.00005),
    Material("test_kit", "Nucleic acid test kit", "kit", "medical", True, 2_000, "chilled", 0.2, 0.0005),
    Material("thermometer", "Infrared thermometer", "unit", "medical", False, 20_000, "fragile", 0.2, 0.0008),
    Material("oxygen_concentrator", "Oxygen concentrator", "unit", "medical", False, 350_000, "fragile", 20.0, 0.1),
    Material("disinfectant", "Chlorine disinfectant", "litre", "protective", True, 1_500, "corrosive", 1.1, 0.0012),
    Material("rice", "Rice", "kg", "living", True, 600, "ambient", 1.0, 0.0013),
    Material("flour", "Wheat flour", "kg", "living", True, 500, "ambient", 1.0, 0.0016),
    Material("edible_oil", "Edible oil", "litre", "living", True, 1_800, "ambient", 0.95, 0.0012),
    Material("instant_noodles", "Instant noodles (carton)", "carton", "living", True, 4_500, "ambient", 2.8, 0.03),
    Material("drinking_water", "Bottled drinking water", "litre", "living", True, 200, "ambient", 1.05, 0.0011),
    Material("vegetables", "Fresh vegetables", "kg", "living", True, 800, "chilled", 1.0, 0.003),
    Material("quilt", "Quilt", "piece", "living", False, 12_000, "ambient", 2.5, 0.05),
)

#: City bounding boxes (lat_min, lat_max, lon_min, lon_max); Wuhan's urban area is ~45 x 50 km.
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "wuhan": (30.40, 30.80, 114.05, 114.60),
}

_DECENTRALIZED_KINDS = (("enterprise", 0.30), ("ecommerce", 0.20), ("household", 0.30), ("ngo", 0.10), ("government", 0.10))
_CENTRALIZED_KINDS = (("government", 0.6), ("enterprise", 0.2), ("ecommerce", 0.2))
#: Which classes a site of an owner kind stocks, with a typical contracted scale (units of the
#: material, before the per-material scale below).
_STOCKS = {
    "government": (("medical", "protective", "living"), 1.0),
    "enterprise": (("medical", "protective"), 0.5),
    "ecommerce": (("living", "protective"), 0.6),
    "ngo": (("protective", "living", "medical"), 0.15),
    "household": (("living", "medical"), 0.01),
}
_MATERIAL_SCALE = {  # contracted quantity of a centralized government depot, in the material's unit
    "medicine": 20_000, "medical_alcohol": 10_000, "ventilator": 80, "pork": 50_000,
    "n95_mask": 500_000, "surgical_mask": 2_000_000, "protective_suit": 50_000, "goggles": 20_000,
    "nitrile_gloves": 200_000, "test_kit": 100_000, "thermometer": 5_000, "oxygen_concentrator": 300,
    "disinfectant": 20_000, "rice": 200_000, "flour": 100_000, "edible_oil": 30_000,
    "instant_noodles": 20_000, "drinking_water": 200_000, "vegetables": 30_000, "quilt": 10_000,
}


_STREETS = ("Jiefang", "Zhongshan", "Minzhu", "Heping", "Xinhua", "Jianshe", "Youyi", "Renmin")


def synthetic_address(region: str, number: int, row: int, col: int, seed: int) -> str:
    """A plausible, clearly illustrative postal address for a generated site (not a real one).

    Drawn from its own generator (seeded by the site), so adding addresses leaves every other
    generated value as it was."""
    rng = random.Random(f"address:{seed}:{number}")
    return (f"{rng.randint(1, 999)} {rng.choice(_STREETS)} Road, block {row:02d}-{col:02d}, "
            f"{region.title()} (illustrative address)")


def synthetic_contact(site_id: str, owner_kind: str, seed: int) -> Contact:
    """The site's duty desk with an illustrative phone number in the reserved +86 000 range."""
    rng = random.Random(f"contact:{seed}:{site_id}")
    return Contact(name=f"{owner_kind.title()} duty desk, {site_id}",
                   phone=f"+86 000 {rng.randint(0, 9999):04d} {rng.randint(0, 9999):04d}")


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([k for k, _ in weighted], weights=[w for _, w in weighted])[0]


def generate_registry(
    n_sites: int,
    seed: int = 1,
    region: str = "wuhan",
    *,
    id_prefix: str | None = None,
    centralized_share: float = 0.03,
    grid: tuple[int, int] = (10, 10),
    materials: Iterable[Material] = CATALOGUE,
    materials_per_site: int | None = None,
    required_materials: Iterable[str] = ("medicine", "medical_alcohol", "ventilator", "pork"),
) -> Registry:
    """A realistic registry of ``n_sites`` over a city-sized grid of cells, deterministic per seed.

    A few percent of sites (``centralized_share``, at least one) are centralized depots; every other
    site is decentralized and names its nearest centralized depot as parent. Owner kinds follow a
    mix (enterprises, e-commerce warehouses, households, NGOs, government); each owner kind stocks
    the material classes it plausibly holds, at a scale that fits it (a household holds ~1 % of a
    depot). Every required material is held by at least one site per grid row of depots.
    ``materials_per_site`` = N makes every site contract the first N catalogue materials (the
    benchmark's 20 readings per message).
    """
    if n_sites < 1:
        raise RegistryError("n_sites must be at least 1")
    rng = random.Random(seed)
    catalogue = {m.material_id: m for m in materials}
    missing = [m for m in required_materials if m not in catalogue]
    if missing:
        raise RegistryError(f"required materials not in the catalogue: {', '.join(missing)}")
    box = REGIONS.get(region, REGIONS["wuhan"])
    prefix = f"{region}-" if id_prefix is None else id_prefix
    n_central = max(1, min(n_sites, round(n_sites * centralized_share)))
    width = max(5, len(str(n_sites)))
    sites: dict[str, Site] = {}
    centrals: list[Site] = []
    for i in range(n_sites):
        site = _generated_site(rng, i, f"{prefix}{i + 1:0{width}d}", i < n_central, n_central, n_sites, box, grid,
                               region, prefix, centrals, catalogue, materials_per_site, seed)
        sites[site.site_id] = site
        if site.tier == "centralized":
            centrals.append(site)
    # The scenario's materials must exist somewhere: give any missing one to the first depot.
    held_anywhere = {m for s in sites.values() for m in s.materials}
    for m in required_materials:
        if m not in held_anywhere:
            first = centrals[0]
            mats = dict(first.materials)
            mats[m] = SiteMaterial(contracted_qty=float(_MATERIAL_SCALE.get(m, 1_000)))
            sites[first.site_id] = replace(first, materials=mats)
    return validate(Registry(materials=catalogue, sites=sites))


def _generated_site(rng: random.Random, i: int, site_id: str, central: bool, n_central: int, n_sites: int,
                    box: tuple[float, float, float, float], grid: tuple[int, int], region: str, prefix: str,
                    centrals: list[Site], catalogue: dict[str, Material], materials_per_site: int | None,
                    seed: int) -> Site:
    """Site number ``i``: its place, owner kind, parent depot and contracted materials (draws from
    ``rng`` in a fixed order, so a seed always gives the same registry)."""
    lat0, lat1, lon0, lon1 = box
    rows, cols = grid
    if central:
        # Spread depots evenly: jittered positions on a coarse lattice.
        k = int(math.ceil(math.sqrt(n_central)))
        r, c = divmod(i, k)
        lat = lat0 + (r + 0.5 + rng.uniform(-0.3, 0.3)) * (lat1 - lat0) / k
        lon = lon0 + (c + 0.5 + rng.uniform(-0.3, 0.3)) * (lon1 - lon0) / k
        kind = _pick(rng, _CENTRALIZED_KINDS)
    else:
        lat = rng.uniform(lat0, lat1)
        lon = rng.uniform(lon0, lon1)
        kind = _pick(rng, _DECENTRALIZED_KINDS)
    lat, lon = min(max(lat, lat0), lat1), min(max(lon, lon0), lon1)
    row = min(rows - 1, int((lat - lat0) / (lat1 - lat0) * rows))
    col = min(cols - 1, int((lon - lon0) / (lon1 - lon0) * cols))
    parent = None
    if not central:
        parent = min(centrals, key=lambda s: (s.lat - lat) ** 2 + (s.lon - lon) ** 2).site_id
    mats = _contracted(rng, kind, central, catalogue, materials_per_site)
    owner_no = rng.randint(1, max(1, n_sites // 5)) if kind in ("household",) else rng.randint(1, max(1, n_sites // 40))
    return Site(
        site_id=site_id,
        name=f"{region.title()} {kind} {'depot' if central else 'site'} {i + 1}",
        owner_id=f"{prefix}{kind}-{i + 1 if kind == 'household' else owner_no}",
        owner_kind=kind,
        tier="centralized" if central else "decentralized",
        parent_site_id=parent,
        region=region,
        grid_cell=f"{region}-r{row:02d}c{col:02d}",
        lat=round(lat, 6),
        lon=round(lon, 6),
        materials=mats,
        address=synthetic_address(region, i + 1, row, col, seed),
        contact=synthetic_contact(site_id, kind, seed),
    )


def _contracted(rng: random.Random, kind: str, central: bool, catalogue: dict[str, Material],
                materials_per_site: int | None) -> dict[str, SiteMaterial]:
    """What a site of ``kind`` contracts: the classes its owner kind plausibly holds, at its scale."""
    ordered = list(catalogue)
    if materials_per_site is not None:
        held = ordered[:materials_per_site]
    else:
        classes, _ = _STOCKS[kind]
        pool = [m for m in ordered if catalogue[m].material_class in classes]
        if central:
            held = pool
        else:
            held = sorted(rng.sample(pool, k=max(1, min(len(pool), rng.randint(2, 6)))), key=ordered.index)
    scale = _STOCKS[kind][1] * (1.0 if central else 0.2)
    return {m: SiteMaterial(contracted_qty=float(max(1, round(_MATERIAL_SCALE.get(m, 1_000) * scale
                                                                  * rng.uniform(0.5, 1.5)))))
            for m in held}
