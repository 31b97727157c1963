"""The scenario: one planning problem, as a file and as the frozen value every stage reads.

A scenario is plain data (YAML, JSON or a dict): materials with their urgency indicators, supply
sites with supply and prices per period, distribution centres with capacity and stock rules, rescue
centres with demand per period, optional arc lists, budget and minimum lot. Periods are numbered from
1 in the file and held 0-based in lists here. Scalars given for per-period fields are expanded to
one value per period. Every problem in the input is a :class:`ScenarioError` naming where it is.

Two layers, so that the contract is declared once and the model reads no raw data:
:class:`ScenarioFile` is the file as written (a frozen pydantic model that refuses unknown names;
its JSON Schema is ``docs/schemas/scenario.schema.json``), :class:`Scenario` the same problem
normalised (one value per period and per material, defaults filled) for the optimizer, the
dispatcher and supervision alike. :func:`load_scenario` reads a pack name, a file or a dict.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterator, Mapping

from pydantic import AfterValidator, BeforeValidator, Field, StrictInt, StringConstraints, ValidationError
from pydantic import model_validator

from vreserve.scenario_names import DEFAULT_THETA, INDICATOR_NAMES, THETA_NAMES, ScenarioError, ThetaName
from vreserve.schemas.common import Frozen
from vreserve.schemas.dispatch import Contact

#: The scenario packs, loadable by name (``python -m optimizer.packs`` generates them).
PACK_DIR = Path(__file__).resolve().parent / "scenarios"
PLACE_KEYS = ("name", "address", "lat", "lon", "contact")
NODE_LISTS = ("materials", "supply_sites", "distribution_centres", "rescue_centres")


# ------------------------------------------------------------------------------ the normalised value
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
class DistributionCentre:
    id: str
    capacity: float  # units of all materials together
    initial: dict[str, float]  # material -> units in stock before period 1 (every material)
    max_inventory: dict[str, float]  # material -> max units held (every material; default capacity)
    safety_stock: dict[str, float]  # material -> min units held at the end of every period (every material)
    max_deliveries_per_period: int | None = None  # max rescue centres served per period
    place: Place | None = None  # where carriers find it (not used by the model)


@dataclass(frozen=True)
class RescueCentre:
    id: str
    demand: dict[str, tuple[float, ...]]  # material -> units needed per period (every material)
    place: Place | None = None  # where carriers find it (not used by the model)


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
        """The scenario as file contract data (loadable again with :func:`load_scenario`)."""
        out: dict[str, Any] = {"name": self.name, "periods": self.periods, "theta": self.theta}
        if self.description:
            out["description"] = self.description
        if self.budget is not None:
            out["budget"] = self.budget
        if self.min_lot is not None:
            out["min_lot"] = self.min_lot
        out["materials"] = [_material_dict(m) for m in self.materials]
        out["supply_sites"] = [_site_dict(w) for w in self.supply_sites]
        out["distribution_centres"] = [_centre_dict(j) for j in self.distribution_centres]
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


def _material_dict(m: Material) -> dict[str, Any]:
    d: dict[str, Any] = {"id": m.id, "unit": m.unit, "kind": m.kind, "price": m.price}
    if m.indicators is not None:
        d["indicators"] = dict(m.indicators)
    if m.urgency is not None:
        d["urgency"] = m.urgency
    if m.theta is not None:
        d["theta"] = m.theta
    return d


def _site_dict(w: SupplySite) -> dict[str, Any]:
    d: dict[str, Any] = {"id": w.id, "supply": {k: list(v) for k, v in w.supply.items()},
                         "price": {k: list(v) for k, v in w.price.items()}}
    if w.on_hand is not None:
        d["on_hand"] = dict(w.on_hand)
    return d


def _centre_dict(j: DistributionCentre) -> dict[str, Any]:
    d: dict[str, Any] = {"id": j.id, "capacity": j.capacity, "initial": dict(j.initial),
                         "max_inventory": dict(j.max_inventory), "safety_stock": dict(j.safety_stock)}
    if j.max_deliveries_per_period is not None:
        d["max_deliveries_per_period"] = j.max_deliveries_per_period
    if j.place is not None:
        d.update(j.place.to_dict())
    return d


# ------------------------------------------------------------------------------ the file's field types
def _number(v: Any) -> float:
    """A finite number; a numeric string too ("10e6": YAML reads that as a string)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"not a number: {str(repr(v))[:60]}") from None
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"not a finite number: {v}")
    return v


def _amount(v: Any) -> float:
    x = _number(v)
    if x < 0:
        raise ValueError(f"negative number {x}")
    return x


def _per_period(v: Any) -> Any:
    """One amount (the same in every period) or a list of one amount per period."""
    if not isinstance(v, (list, tuple)):
        return _amount(v)
    out = []
    for t, x in enumerate(v):
        try:
            out.append(_amount(x))
        except ValueError as exc:
            raise ValueError(f"period {t + 1}: {exc}") from None
    return tuple(out)


def _text(v: Any) -> Any:
    """A name given as a number (YAML reads ``id: 7`` as one) is the text the file shows."""
    return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def _periods(v: Any) -> Any:
    """A whole count, strictly: ``periods: 2.5`` or ``"3"`` is a mistake, not something to round."""
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"need a positive integer, got {str(repr(v))[:60]}")
    return v


def _theta(v: Any) -> Any:
    if v is None or v == "":
        return None
    if v not in THETA_NAMES:
        raise ValueError(f"unknown function {str(repr(v))[:60]}; known: {sorted(THETA_NAMES)}")
    return v


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("need a non-empty string")
    return v


Number = Annotated[float, BeforeValidator(_number)]
Amount = Annotated[float, Field(ge=0), BeforeValidator(_amount)]
#: what _per_period returned, checked again only by pydantic's core (a Python call per number is the cost)
_Checked = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Series = Annotated[_Checked | tuple[_Checked, ...], BeforeValidator(_per_period),
                   Field(description="one amount for every period, or a list of one per period")]
Text = Annotated[str, BeforeValidator(_text)]
Id = Annotated[Text, StringConstraints(min_length=1)]
NonEmpty = Annotated[str, StringConstraints(strict=True, min_length=1), AfterValidator(_not_blank)]
ByMaterial = Annotated[dict[str, Amount], Field(description="material id -> amount")]
SeriesByMaterial = Annotated[dict[str, Series], Field(description="material id -> amount per period")]


# ------------------------------------------------------------------------------ the file's models
class MaterialEntry(Frozen):
    """One material: its unit, default price and what makes it urgent (five indicators, or an override)."""

    id: Id
    unit: Text = "units"
    kind: Text = ""
    price: Amount = Field(0.0, description="default price per unit (currency units) where a site gives none")
    indicators: dict[str, Amount] | None = Field(None, description=f"the indicators {', '.join(INDICATOR_NAMES)}")
    urgency: Annotated[float, Field(ge=0, le=1), BeforeValidator(_amount)] | None = Field(None, description="overrides the entropy-weight score")
    theta: Amount | None = Field(None, description="overrides the shortage coefficient")

    @model_validator(mode="after")
    def _urgency_stated(self) -> "MaterialEntry":
        unknown = sorted(set(self.indicators or {}) - set(INDICATOR_NAMES))
        if unknown:
            raise ValueError(f"indicators: unknown indicator(s) {unknown}; known: {list(INDICATOR_NAMES)}")
        missing = [k for k in INDICATOR_NAMES if k not in (self.indicators or {})]
        if self.urgency is None and self.theta is None and missing:
            raise ValueError(f"indicator(s) missing {missing} (or give 'urgency' or 'theta')")
        return self


class SupplySiteEntry(Frozen):
    """A supply node: what it can ship per period (a flow), what it holds now (a stock), its prices."""

    id: Id
    supply: SeriesByMaterial | None = None
    price: SeriesByMaterial | None = None
    on_hand: ByMaterial | None = Field(None, description="units held now: all periods' shipments together")


class _Placed(Frozen):
    """Where a centre is, for the carriers (not used by the model)."""

    name: NonEmpty | None = None
    address: NonEmpty | None = None
    lat: Number | None = Field(None, description="WGS 84 decimal degrees, with lon")
    lon: Number | None = Field(None, description="WGS 84 decimal degrees, with lat")
    contact: Contact | None = None

    @model_validator(mode="after")
    def _coordinates(self) -> "_Placed":
        lat, lon = self.lat, self.lon
        if (lat is None) != (lon is None) or (lat is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180)):
            raise ValueError(f"lat and lon go together, in degrees (-90..90, -180..180), got {lat}, {lon}")
        return self

    def place(self) -> Place | None:
        if all(getattr(self, k) is None for k in PLACE_KEYS):
            return None
        return Place(name=self.name, address=self.address, lat=self.lat, lon=self.lon, contact=self.contact)


class DistributionCentreEntry(_Placed):
    id: Id
    capacity: Amount = Field(description="units of all materials together")
    initial: ByMaterial | None = Field(None, description="units in stock before period 1 (default 0)")
    max_inventory: ByMaterial | None = Field(None, description="max units held (default the capacity)")
    safety_stock: ByMaterial | None = Field(None, description="min units held at every period's end (default 0)")
    max_deliveries_per_period: Annotated[StrictInt, Field(ge=0)] | None = None


class RescueCentreEntry(_Placed):
    id: Id
    demand: SeriesByMaterial | None = None


class ArcsEntry(Frozen):
    """The arcs that exist (a list left out: every pair)."""

    supply: tuple[tuple[Id, Id], ...] | None = Field(None, description="[supply site, distribution centre] pairs")
    delivery: tuple[tuple[Id, Id], ...] | None = Field(None, description="[distribution centre, rescue centre] pairs")


class ScenarioFile(Frozen):
    """A scenario file as written (module docstring); unknown names anywhere are refused."""

    name: Text
    periods: Annotated[int, Field(ge=1), BeforeValidator(_periods)]
    description: Text = ""
    theta: Annotated[ThetaName | None, BeforeValidator(_theta)] = None
    budget: Amount | None = Field(None, description="currency units over the horizon; none: unlimited")
    min_lot: Amount | None = Field(None, description="min units (all materials) on a delivery arc that is used")
    materials: Annotated[tuple[MaterialEntry, ...], Field(min_length=1)]
    # may be empty: a region whose stock is all at its distribution centres is still planned
    supply_sites: tuple[SupplySiteEntry, ...]
    distribution_centres: Annotated[tuple[DistributionCentreEntry, ...], Field(min_length=1)]
    rescue_centres: Annotated[tuple[RescueCentreEntry, ...], Field(min_length=1)]
    arcs: ArcsEntry | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "ScenarioFile":
        for problem in _problems(self):
            raise ValueError(problem)
        return self

    def to_scenario(self) -> Scenario:
        """The normalised scenario: one value per period and per material, defaults filled."""
        mids = [m.id for m in self.materials]
        return Scenario(
            name=self.name, periods=self.periods, materials=tuple(_material(m) for m in self.materials),
            supply_sites=tuple(_supply_site(s, self.materials, self.periods) for s in self.supply_sites),
            distribution_centres=tuple(_distribution_centre(d, mids) for d in self.distribution_centres),
            rescue_centres=tuple(RescueCentre(id=r.id, demand=_filled(r.demand, mids, self.periods),
                                              place=r.place()) for r in self.rescue_centres),
            budget=self.budget, theta=self.theta or DEFAULT_THETA, min_lot=self.min_lot,
            arcs=Arcs() if self.arcs is None else Arcs(supply=self.arcs.supply, delivery=self.arcs.delivery),
            description=self.description)


# ------------------------------------------------------------------------------ cross-checks
def _problems(f: ScenarioFile) -> Iterator[str]:
    """What the fields alone cannot say: unique ids, known materials, one value per period, known arc ends."""
    for key in NODE_LISTS:
        ids = [n.id for n in getattr(f, key)]
        dup = sorted({x for x in ids if ids.count(x) > 1})
        if dup:
            yield f"{key}: duplicate id(s) {dup}"
    mids = {m.id for m in f.materials}
    for key, fields in (("supply_sites", ("supply", "price", "on_hand")), ("distribution_centres",
                        ("initial", "max_inventory", "safety_stock")), ("rescue_centres", ("demand",))):
        for i, node in enumerate(getattr(f, key)):
            for name in fields:
                yield from _by_material_problems(f"{key}[{i}] ({node.id}).{name}", getattr(node, name), mids, f.periods)
    site_ids, dc_ids, rc_ids = ({n.id for n in nodes} for nodes in (f.supply_sites, f.distribution_centres,
                                                                     f.rescue_centres))
    overlap = (site_ids & dc_ids) | (dc_ids & rc_ids) | (site_ids & rc_ids)
    if overlap:
        yield f"ids used by more than one kind of node: {sorted(overlap)}"
    if f.arcs is not None:
        yield from _arc_problems("supply", f.arcs.supply, (site_ids, "supply site"), (dc_ids, "distribution centre"))
        yield from _arc_problems("delivery", f.arcs.delivery, (dc_ids, "distribution centre"),
                                 (rc_ids, "rescue centre"))


def _by_material_problems(where: str, values: Mapping[str, Any] | None, mids: set[str], periods: int) -> Iterator[str]:
    for m, v in (values or {}).items():
        if m not in mids:
            yield f"{where}: unknown material {m!r} (materials: {sorted(mids)})"
        elif isinstance(v, tuple) and len(v) != periods:
            yield f"{where}.{m}: list of {len(v)} values, need one per period ({periods})"


def _arc_problems(key: str, arcs: tuple[tuple[str, str], ...] | None, left: tuple[set[str], str],
                  right: tuple[set[str], str]) -> Iterator[str]:
    for n, (a, b) in enumerate(arcs or ()):
        if a not in left[0]:
            yield f"arcs.{key}[{n}]: unknown {left[1]} {a!r}"
        if b not in right[0]:
            yield f"arcs.{key}[{n}]: unknown {right[1]} {b!r}"
    if arcs is not None and len(set(arcs)) != len(arcs):
        yield f"arcs.{key}: duplicate arcs"


# ------------------------------------------------------------------------------ normalising
def _series(v: float | tuple[float, ...], periods: int) -> tuple[float, ...]:
    return v if isinstance(v, tuple) else (v,) * periods


def _filled(values: Mapping[str, Any] | None, mids: list[str], periods: int) -> dict[str, tuple[float, ...]]:
    values = values or {}
    return {m: _series(values[m], periods) if m in values else (0.0,) * periods for m in mids}


def _material(m: MaterialEntry) -> Material:
    return Material(id=m.id, unit=m.unit, kind=m.kind, price=m.price,
                    indicators=None if m.indicators is None else dict(m.indicators), urgency=m.urgency, theta=m.theta)


def _supply_site(s: SupplySiteEntry, materials: tuple[MaterialEntry, ...], periods: int) -> SupplySite:
    mids = [m.id for m in materials]
    supply = {m: _series(v, periods) for m, v in (s.supply or {}).items()}
    price = {m: _series(v, periods) for m, v in (s.price or {}).items()}
    on_hand = None
    if s.on_hand is not None:
        # a material without on_hand stays limited by its per-period supply alone
        on_hand = {m: s.on_hand.get(m, sum(supply.get(m, ()))) for m in mids}
        # on hand but no supply series: shippable in any period, up to what is on hand
        supply = {m: supply.get(m, (s.on_hand[m],) * periods) if m in s.on_hand else supply.get(m) for m in mids}
        supply = {m: v for m, v in supply.items() if v is not None}
    return SupplySite(id=s.id, supply={m: supply.get(m, (0.0,) * periods) for m in mids},
                      price={m.id: price.get(m.id, (m.price,) * periods) for m in materials}, on_hand=on_hand)


def _distribution_centre(d: DistributionCentreEntry, mids: list[str]) -> DistributionCentre:
    initial, maxinv, safety = d.initial or {}, d.max_inventory or {}, d.safety_stock or {}
    return DistributionCentre(
        id=d.id, capacity=d.capacity, initial={m: initial.get(m, 0.0) for m in mids},
        max_inventory={m: maxinv.get(m, d.capacity) for m in mids},
        safety_stock={m: safety.get(m, 0.0) for m in mids},
        max_deliveries_per_period=d.max_deliveries_per_period, place=d.place())


# ------------------------------------------------------------------------------ loading
def known_packs() -> list[str]:
    return sorted(p.stem for p in PACK_DIR.glob("*.yaml")) + sorted(p.stem for p in PACK_DIR.glob("*.json"))


def load_scenario(source: "str | Path | Mapping[str, Any] | Scenario") -> Scenario:
    """A scenario from a pack name (``wuhan``), a YAML/JSON file path, a dict, or a Scenario."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Mapping):
        return parse_scenario(source)
    path = _resolve(source)
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
            import yaml  # only a YAML file pays for it
            data = yaml.safe_load(text)
    except Exception as exc:  # yaml/json syntax errors
        raise ScenarioError(f"{path}: cannot parse: {exc}") from None
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return parse_scenario(data)


def _resolve(source: str | Path) -> Path:
    """The file a path or a pack name stands for."""
    path = Path(source)
    if path.exists():
        return path
    name = str(source)
    for suffix in (".yaml", ".yml", ".json"):
        candidate = PACK_DIR / f"{name}{suffix}"
        if "/" not in name and candidate.exists():
            return candidate
    raise ScenarioError(f"no scenario file {name!r} and no pack of that name "
                        f"(packs: {', '.join(known_packs()) or 'none'})")


def parse_scenario(data: Mapping[str, Any]) -> Scenario:
    """Validate file contract data (:class:`ScenarioFile`) and normalise it into a :class:`Scenario`."""
    if not isinstance(data, Mapping):
        raise ScenarioError(f"scenario: expected a mapping, got {type(data).__name__}")
    try:
        f = ScenarioFile.model_validate(dict(data))
    except ValidationError as exc:
        raise ScenarioError(located(exc, data)) from None
    return f.to_scenario()


# ------------------------------------------------------------------------------ errors, located
def located(exc: ValidationError, data: Mapping[str, Any]) -> str:
    """The problems as one line in the file's terms: where (a node named by its id as well as its
    index, ``supply_sites[0] (W1).supply``) and why; unknown and missing keys grouped by place."""
    errors = exc.errors(include_url=False)
    grouped: dict[tuple[str, str], list[str]] = {}
    reasons: list[str] = []
    for err in errors:
        loc, kind = tuple(err["loc"]), err["type"]
        indexed = bool(loc) and isinstance(loc[-1], int)
        if kind == "too_short" and any(len(e["loc"]) > len(loc) and tuple(e["loc"][:len(loc)]) == loc for e in errors):
            continue  # pydantic counts a list whose items failed as too short: the items' reasons say it
        if kind in ("extra_forbidden", "missing") and not indexed:
            grouped.setdefault((kind, _where(loc[:-1], data) or "scenario"), []).append(str(loc[-1]))
            continue
        where = _where(loc[:-1] if indexed and kind == "missing" else loc, data)
        reasons.append(f"{where}: {_reason(err)}" if where else _reason(err))
    words = {"extra_forbidden": "unknown key(s)", "missing": "missing key(s)"}
    reasons = [f"{where}: {words[kind]} {keys}" for (kind, where), keys in grouped.items()] + reasons
    return "; ".join(reasons[:3]) + (f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else "")


def _reason(err: Any) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "need a non-empty list"
    if kind in ("missing", "too_long"):  # an item of a list too short or long: the file's one pair, an arc
        return "expected a [from, to] pair"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"must be {'at least ' + str(ctx['ge']) if 'ge' in ctx else 'at most ' + str(ctx['le'])}, got {err['input']!r}"
    return str(err["msg"])


def _where(loc: tuple, data: Mapping[str, Any]) -> str:
    out = ""
    for n, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if n == 1 and loc[0] in NODE_LISTS:
                out += _named(data.get(loc[0]), part)
        else:
            out += f".{part}" if out else str(part)
    return out


def _named(items: Any, i: int) -> str:
    """`` (id)`` of the i-th node when the file gives one."""
    if isinstance(items, list) and i < len(items) and isinstance(items[i], Mapping) and items[i].get("id") is not None:
        return f" ({str(items[i]['id'])[:64]})"
    return ""
