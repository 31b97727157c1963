"""The public scenario contract: a frozen, validated description of one planning problem.

A scenario is plain data (YAML, JSON or a dict): materials with their urgency indicators, supply
sites with supply and prices per period, distribution centres with capacity and stock rules, rescue
centres with demand per period, optional arc lists, budget and minimum lot. Periods are numbered from
1 in the contract and held 0-based in lists here. Scalars given for per-period fields are expanded to
one value per period. Every problem in the input is a :class:`ScenarioError` naming where it is.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from optimizer.errors import ScenarioError
from optimizer.urgency import DEFAULT_THETA, INDICATORS, THETA_FUNCTIONS
from vreserve.schemas.common import validation_reason
from vreserve.schemas.dispatch import Contact

PACK_DIR = Path(__file__).resolve().parent / "scenarios"




@dataclass(frozen=True)
class Material:
    id: str
    unit: str = "units"
    kind: str = ""
    price: float = 0.0  # default purchase price per unit (currency units), used where a site gives none
    indicators: dict[str, float] | None = None
    urgency: float | None = None  # overrides the entropy-weight score
    theta: float | None = None  # overrides the shortage coefficient


@dataclass(frozen=True)
class SupplySite:
    id: str
    supply: dict[str, tuple[float, ...]]  # material -> units available per period
    price: dict[str, tuple[float, ...]]  # material -> price per unit per period (every material)
    # material -> units held now: shipments over ALL periods together are at most this (a stock, where
    # ``supply`` is a flow). Live stock is one: offering it whole in every period without this limit
    # would let a plan spend it T times. None = no such limit for any material.
    on_hand: dict[str, float] | None = None


@dataclass(frozen=True)
class DistributionCentre:
    id: str
    capacity: float  # units of all materials together
    initial: dict[str, float]  # material -> units in stock before period 1 (every material)
    max_inventory: dict[str, float]  # material -> max units held (every material; default capacity)
    safety_stock: dict[str, float]  # material -> min units held at the end of every period (every material)
    max_deliveries_per_period: int | None = None  # max rescue centres served per period
    place: "Place | None" = None  # where carriers find it (not used by the model)


@dataclass(frozen=True)
class RescueCentre:
    id: str
    demand: dict[str, tuple[float, ...]]  # material -> units needed per period (every material)
    place: "Place | None" = None  # where carriers find it (not used by the model)


@dataclass(frozen=True)
class Place:
    """Where a centre is, for the carriers of its orders: name, postal address, WGS 84 decimal
    degrees, whom to call. Each part optional (None: the file does not say)."""

    name: str | None = None
    address: str | None = None
    lat: float | None = None
    lon: float | None = None
    contact: Contact | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in PLACE_KEYS if k != "contact" and getattr(self, k) is not None}
        if self.contact is not None:
            out["contact"] = self.contact.model_dump(exclude_none=True)
        return out


@dataclass(frozen=True)
class Arcs:
    supply: tuple[tuple[str, str], ...] | None = None  # (supply site, distribution centre); None = all
    delivery: tuple[tuple[str, str], ...] | None = None  # (distribution centre, rescue centre); None = all


@dataclass(frozen=True)
class Scenario:
    name: str
    periods: int
    materials: tuple[Material, ...]
    supply_sites: tuple[SupplySite, ...]
    distribution_centres: tuple[DistributionCentre, ...]
    rescue_centres: tuple[RescueCentre, ...]
    budget: float | None = None  # currency units over the horizon; None = unlimited
    theta: str = DEFAULT_THETA
    arcs: Arcs = field(default_factory=Arcs)
    min_lot: float | None = None  # min units (all materials) on a delivery arc that is used
    description: str = ""

    @property
    def material_ids(self) -> list[str]:
        return [m.id for m in self.materials]

    def supply_arcs(self) -> list[tuple[str, str]]:
        if self.arcs.supply is not None:
            return list(self.arcs.supply)
        return [(w.id, j.id) for w in self.supply_sites for j in self.distribution_centres]

    def delivery_arcs(self) -> list[tuple[str, str]]:
        if self.arcs.delivery is not None:
            return list(self.arcs.delivery)
        return [(j.id, k.id) for j in self.distribution_centres for k in self.rescue_centres]

    def to_dict(self) -> dict[str, Any]:
        """The scenario as contract data (loadable again with :func:`load_scenario`)."""
        out: dict[str, Any] = {"name": self.name, "periods": self.periods, "theta": self.theta}
        if self.description:
            out["description"] = self.description
        if self.budget is not None:
            out["budget"] = self.budget
        if self.min_lot is not None:
            out["min_lot"] = self.min_lot
        mats = []
        for m in self.materials:
            d: dict[str, Any] = {"id": m.id, "unit": m.unit, "kind": m.kind, "price": m.price}
            if m.indicators is not None:
                d["indicators"] = dict(m.indicators)
            if m.urgency is not None:
                d["urgency"] = m.urgency
            if m.theta is not None:
                d["theta"] = m.theta
            mats.append(d)
        out["materials"] = mats
        sites = []
        for w in self.supply_sites:
            d = {"id": w.id, "supply": {k: list(v) for k, v in w.supply.items()},
                 "price": {k: list(v) for k, v in w.price.items()}}
            if w.on_hand is not None:
                d["on_hand"] = dict(w.on_hand)
            sites.append(d)
        out["supply_sites"] = sites
        dcs = []
        for j in self.distribution_centres:
            d = {"id": j.id, "capacity": j.capacity, "initial": dict(j.initial),
                 "max_inventory": dict(j.max_inventory), "safety_stock": dict(j.safety_stock)}
            if j.max_deliveries_per_period is not None:
                d["max_deliveries_per_period"] = j.max_deliveries_per_period
            if j.place is not None:
                d.update(j.place.to_dict())
            dcs.append(d)
        out["distribution_centres"] = dcs
        out["rescue_centres"] = [{"id": k.id, "demand": {m: list(v) for m, v in k.demand.items()},
                                  **(k.place.to_dict() if k.place is not None else {})}
                                 for k in self.rescue_centres]
        if self.arcs.supply is not None or self.arcs.delivery is not None:
            arcs: dict[str, Any] = {}
            if self.arcs.supply is not None:
                arcs["supply"] = [list(a) for a in self.arcs.supply]
            if self.arcs.delivery is not None:
                arcs["delivery"] = [list(a) for a in self.arcs.delivery]
            out["arcs"] = arcs
        return out


# --------------------------------------------------------------------------------------------------
# Loading and validation


def known_packs() -> list[str]:
    return sorted(p.stem for p in PACK_DIR.glob("*.yaml")) + sorted(p.stem for p in PACK_DIR.glob("*.json"))


def load_scenario(source: "str | Path | Mapping[str, Any] | Scenario") -> Scenario:
    """A scenario from a pack name (``wuhan``), a YAML/JSON file path, a dict, or a Scenario."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Mapping):
        return parse_scenario(source)
    path = Path(source)
    if not path.exists():
        name = str(source)
        for suffix in (".yaml", ".yml", ".json"):
            candidate = PACK_DIR / f"{name}{suffix}"
            if "/" not in name and candidate.exists():
                path = candidate
                break
        else:
            raise ScenarioError(f"no scenario file {name!r} and no pack of that name "
                                f"(packs: {', '.join(known_packs()) or 'none'})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:  # a binary file: one line, not a traceback
        raise ScenarioError(f"{path}: not a UTF-8 text file (invalid byte at offset {exc.start})") from None
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml
            data = yaml.safe_load(text)
    except Exception as exc:  # yaml/json syntax errors
        raise ScenarioError(f"{path}: cannot parse: {exc}") from None
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return parse_scenario(data)


TOP_KEYS = {"name", "periods", "budget", "theta", "materials", "supply_sites", "distribution_centres",
            "rescue_centres", "arcs", "min_lot", "description"}
MATERIAL_KEYS = {"id", "unit", "kind", "price", "indicators", "urgency", "theta"}
SITE_KEYS = {"id", "supply", "price", "on_hand"}
PLACE_KEYS = ("name", "address", "lat", "lon", "contact")
DC_KEYS = {"id", "capacity", "initial", "max_inventory", "safety_stock", "max_deliveries_per_period", *PLACE_KEYS}
RC_KEYS = {"id", "demand", *PLACE_KEYS}


def _place(where: str, d: Mapping[str, Any]) -> Place | None:
    """A centre's place from its entry (None when it states none of the place keys)."""
    if not any(d.get(k) is not None for k in PLACE_KEYS):
        return None
    for key in ("name", "address"):
        if d.get(key) is not None and (not isinstance(d[key], str) or not d[key].strip()):
            raise ScenarioError(f"{where}.{key}: need a non-empty string, got {d[key]!r}")
    lat = None if d.get("lat") is None else _number(f"{where}.lat", d["lat"], allow_negative=True)
    lon = None if d.get("lon") is None else _number(f"{where}.lon", d["lon"], allow_negative=True)
    if (lat is None) != (lon is None) or (lat is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180)):
        raise ScenarioError(f"{where}: lat and lon go together, in degrees (-90..90, -180..180), got {lat}, {lon}")
    contact = None
    if d.get("contact") is not None:
        try:
            contact = Contact.model_validate(d["contact"])
        except ValidationError as exc:
            raise ScenarioError(validation_reason(exc, f"{where}.contact")) from None
    return Place(name=d.get("name"), address=d.get("address"), lat=lat, lon=lon, contact=contact)


def _keys(where: str, obj: Any, allowed: set[str], required: set[str]) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ScenarioError(f"{where}: expected a mapping, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    missing = sorted(k for k in required if k not in obj or obj[k] is None)
    if missing:
        raise ScenarioError(f"{where}: missing key(s) {missing}")
    return obj


def _number(where: str, v: Any, *, allow_negative: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:
            v = float(v)  # "10e6" from YAML strings
        except (TypeError, ValueError):
            raise ScenarioError(f"{where}: not a number: {v!r}") from None
    v = float(v)
    if not math.isfinite(v):
        raise ScenarioError(f"{where}: not a finite number: {v}")
    if v < 0 and not allow_negative:
        raise ScenarioError(f"{where}: negative number {v}")
    return v


def _series(where: str, v: Any, periods: int) -> tuple[float, ...]:
    if isinstance(v, (list, tuple)):
        if len(v) != periods:
            raise ScenarioError(f"{where}: list of {len(v)} values, need one per period ({periods})")
        return tuple(_number(f"{where}[{t + 1}]", x) for t, x in enumerate(v))
    x = _number(where, v)
    return (x,) * periods


def _by_material(where: str, obj: Any, mids: set[str], conv) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise ScenarioError(f"{where}: expected a mapping material -> value, got {type(obj).__name__}")
    out = {}
    for m, v in obj.items():
        if m not in mids:
            raise ScenarioError(f"{where}: unknown material {m!r} (materials: {sorted(mids)})")
        out[m] = conv(f"{where}.{m}", v)
    return out


def _ids(where: str, items: list, kind: str) -> list[str]:
    ids = []
    for i, it in enumerate(items):
        if not isinstance(it, Mapping) or "id" not in it:
            raise ScenarioError(f"{where}[{i}]: every {kind} needs an 'id'")
        ids.append(str(it["id"]))
    dup = sorted({x for x in ids if ids.count(x) > 1})
    if dup:
        raise ScenarioError(f"{where}: duplicate id(s) {dup}")
    return ids


def parse_scenario(data: Mapping[str, Any]) -> Scenario:
    """Validate contract data and build a :class:`Scenario` (see the module docstring)."""
    _keys("scenario", data, TOP_KEYS, {"name", "periods", "materials", "supply_sites",
                                       "distribution_centres", "rescue_centres"})
    periods = data["periods"]
    if isinstance(periods, bool) or not isinstance(periods, int) or periods < 1:
        raise ScenarioError(f"periods: need a positive integer, got {periods!r}")
    theta = str(data.get("theta") or DEFAULT_THETA)
    if theta not in THETA_FUNCTIONS:
        raise ScenarioError(f"theta: unknown function {theta!r}; known: {sorted(THETA_FUNCTIONS)}")
    budget = None if data.get("budget") is None else _number("budget", data["budget"])
    min_lot = None if data.get("min_lot") is None else _number("min_lot", data["min_lot"])
    for key in ("materials", "supply_sites", "distribution_centres", "rescue_centres"):
        if not isinstance(data[key], list) or not data[key]:
            raise ScenarioError(f"{key}: need a non-empty list")
    materials = _materials(data["materials"])
    sites = _supply_sites(data["supply_sites"], materials, periods)
    dcs = _distribution_centres(data["distribution_centres"], [m.id for m in materials])
    rcs = _rescue_centres(data["rescue_centres"], [m.id for m in materials], periods)
    site_ids, dc_ids, rc_ids = ({n.id for n in nodes} for nodes in (sites, dcs, rcs))
    overlap = (site_ids & dc_ids) | (dc_ids & rc_ids) | (site_ids & rc_ids)
    if overlap:
        raise ScenarioError(f"ids used by more than one kind of node: {sorted(overlap)}")
    arcs = Arcs() if data.get("arcs") is None else _arcs(data["arcs"], site_ids, dc_ids, rc_ids)
    return Scenario(name=str(data["name"]), periods=periods, materials=materials, supply_sites=sites,
                    distribution_centres=dcs, rescue_centres=rcs, budget=budget, theta=theta,
                    arcs=arcs, min_lot=min_lot, description=str(data.get("description") or ""))


def _materials(items: list) -> tuple[Material, ...]:
    mat_ids = _ids("materials", items, "material")
    materials = []
    for i, md in enumerate(items):
        where = f"materials[{i}] ({mat_ids[i]})"
        _keys(where, md, MATERIAL_KEYS, {"id"})
        ind = md.get("indicators")
        indicators = None
        if ind is not None:
            if not isinstance(ind, Mapping):
                raise ScenarioError(f"{where}.indicators: expected a mapping")
            unknown = sorted(set(ind) - set(INDICATORS))
            if unknown:
                raise ScenarioError(f"{where}.indicators: unknown indicator(s) {unknown}; known: {list(INDICATORS)}")
            indicators = {k: _number(f"{where}.indicators.{k}", v) for k, v in ind.items()}
        u = None if md.get("urgency") is None else _number(f"{where}.urgency", md["urgency"])
        if u is not None and u > 1:
            raise ScenarioError(f"{where}.urgency: must be in [0, 1], got {u}")
        th = None if md.get("theta") is None else _number(f"{where}.theta", md["theta"])
        if u is None and th is None:
            missing = [k for k in INDICATORS if indicators is None or k not in indicators]
            if missing:
                raise ScenarioError(f"{where}: indicator(s) missing {missing} (or give 'urgency' or 'theta')")
        materials.append(Material(id=mat_ids[i], unit=str(md.get("unit", "units")), kind=str(md.get("kind", "")),
                                  price=_number(f"{where}.price", md.get("price", 0.0)), indicators=indicators,
                                  urgency=u, theta=th))
    return tuple(materials)


def _supply_sites(items: list, materials: tuple[Material, ...], periods: int) -> tuple[SupplySite, ...]:
    mat_ids = [m.id for m in materials]
    mids = set(mat_ids)
    default_price = {m.id: m.price for m in materials}

    def series(where, v):
        return _series(where, v, periods)

    site_ids = _ids("supply_sites", items, "supply site")
    sites = []
    for i, sd in enumerate(items):
        where = f"supply_sites[{i}] ({site_ids[i]})"
        _keys(where, sd, SITE_KEYS, {"id"})
        supply = _by_material(f"{where}.supply", sd.get("supply"), mids, series)
        price = _by_material(f"{where}.price", sd.get("price"), mids, series)
        on_hand = None
        if sd.get("on_hand") is not None:
            given = _by_material(f"{where}.on_hand", sd["on_hand"], mids, _number)
            # a material without on_hand stays limited by its per-period supply alone
            on_hand = {m: given.get(m, sum(supply.get(m, ()))) for m in mat_ids}
            # on hand but no supply series: shippable in any period, up to what is on hand
            supply = {m: supply.get(m, (given[m],) * periods) if m in given else supply.get(m) for m in mat_ids}
            supply = {m: v for m, v in supply.items() if v is not None}
        sites.append(SupplySite(
            id=site_ids[i],
            supply={m: supply.get(m, (0.0,) * periods) for m in mat_ids},
            price={m: price.get(m, (default_price[m],) * periods) for m in mat_ids},
            on_hand=on_hand))
    return tuple(sites)


def _distribution_centres(items: list, mat_ids: list[str]) -> tuple[DistributionCentre, ...]:
    mids = set(mat_ids)
    dc_ids = _ids("distribution_centres", items, "distribution centre")
    dcs = []
    for i, dd in enumerate(items):
        where = f"distribution_centres[{i}] ({dc_ids[i]})"
        _keys(where, dd, DC_KEYS, {"id", "capacity"})
        cap = _number(f"{where}.capacity", dd["capacity"])
        initial = _by_material(f"{where}.initial", dd.get("initial"), mids, _number)
        maxinv = _by_material(f"{where}.max_inventory", dd.get("max_inventory"), mids, _number)
        safety = _by_material(f"{where}.safety_stock", dd.get("safety_stock"), mids, _number)
        fmax = dd.get("max_deliveries_per_period")
        if fmax is not None:
            if isinstance(fmax, bool) or not isinstance(fmax, int) or fmax < 0:
                raise ScenarioError(f"{where}.max_deliveries_per_period: need a non-negative integer, got {fmax!r}")
        dcs.append(DistributionCentre(
            id=dc_ids[i], capacity=cap,
            initial={m: initial.get(m, 0.0) for m in mat_ids},
            max_inventory={m: maxinv.get(m, cap) for m in mat_ids},
            safety_stock={m: safety.get(m, 0.0) for m in mat_ids},
            max_deliveries_per_period=fmax, place=_place(where, dd)))
    return tuple(dcs)


def _rescue_centres(items: list, mat_ids: list[str], periods: int) -> tuple[RescueCentre, ...]:
    rc_ids = _ids("rescue_centres", items, "rescue centre")
    rcs = []
    for i, rd in enumerate(items):
        where = f"rescue_centres[{i}] ({rc_ids[i]})"
        _keys(where, rd, RC_KEYS, {"id"})
        demand = _by_material(f"{where}.demand", rd.get("demand"), set(mat_ids),
                              lambda w, v: _series(w, v, periods))
        rcs.append(RescueCentre(id=rc_ids[i], demand={m: demand.get(m, (0.0,) * periods) for m in mat_ids},
                                place=_place(where, rd)))
    return tuple(rcs)


def _arcs(raw: Any, site_ids: set[str], dc_ids: set[str], rc_ids: set[str]) -> Arcs:
    ad = _keys("arcs", raw, {"supply", "delivery"}, set())

    def arc_list(key, left, right, left_kind, right_kind):
        if ad.get(key) is None:
            return None
        if not isinstance(ad[key], list):
            raise ScenarioError(f"arcs.{key}: expected a list of [from, to] pairs")
        out = []
        for n, pair in enumerate(ad[key]):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ScenarioError(f"arcs.{key}[{n}]: expected a [from, to] pair, got {pair!r}")
            a, b = str(pair[0]), str(pair[1])
            if a not in left:
                raise ScenarioError(f"arcs.{key}[{n}]: unknown {left_kind} {a!r}")
            if b not in right:
                raise ScenarioError(f"arcs.{key}[{n}]: unknown {right_kind} {b!r}")
            out.append((a, b))
        if len(set(out)) != len(out):
            raise ScenarioError(f"arcs.{key}: duplicate arcs")
        return tuple(out)

    return Arcs(supply=arc_list("supply", site_ids, dc_ids, "supply site", "distribution centre"),
                delivery=arc_list("delivery", dc_ids, rc_ids, "distribution centre", "rescue centre"))
