"""The site registry: materials catalogue, storage sites, what each site commits to the reserve.

Pure logic (load, validate, generate, write) in the middle; :func:`store_registry` is the one
database adapter. The file format is YAML (``docs/ingest.md``)::

    version: 1
    materials:
      - {id: medicine, name: Medicine (boxed), unit: box, class: medical, consumable: true,
         reference_price_minor: 8000}
    contract_defaults: {valid_days_before: 30, valid_days_after: 365}   # optional
    sites:
      - {id: wuhan-00001, name: ..., owner_id: ..., owner_kind: government, tier: centralized,
         parent: null, region: wuhan, grid_cell: wuhan-r03c07, lat: 30.59, lon: 114.30,
         status: active, trust: 1.0,
         materials: {medicine: 1200, ventilator: {contracted_qty: 20, call_off_price_minor: 250000}}}

A site's material entry is either the contracted quantity or a mapping with ``contracted_qty``
and optional contract terms; missing terms get the documented defaults (:func:`default_terms`).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterable

from pydantic import ValidationError

from vreserve.schemas.common import validation_reason
from vreserve.schemas.dispatch import HANDLING_CLASSES, Contact

OWNER_KINDS = ("government", "enterprise", "ecommerce", "ngo", "household")
TIERS = ("centralized", "decentralized")
STATUSES = ("active", "suspended")
MATERIAL_CLASSES = ("medical", "protective", "living")
TERM_FIELDS = (
    "valid_from",
    "valid_to",
    "standby_fee_minor_per_unit_day",
    "call_off_price_minor",
    "penalty_minor",
    "min_response_minutes",
)
FORMAT_VERSION = 1


class RegistryError(ValueError):
    """A registry file or object is not acceptable; the message says where and why."""


@dataclass(frozen=True)
class Material:
    """One catalogue entry; every quantity of it is counted in ``unit``."""

    material_id: str
    name: str
    unit: str
    material_class: str  # medical, protective, living
    consumable: bool  # False = durable
    #: Reference price of one unit in minor currency units; only used for default contract terms.
    reference_price_minor: int = 1000
    #: How a carrier handles it (one of HANDLING_CLASSES); None: not stated.
    handling: str | None = None
    #: Weight of one unit in kg and its volume in m3, packed for transport; None: not stated.
    weight_kg_per_unit: float | None = None
    volume_m3_per_unit: float | None = None


@dataclass(frozen=True)
class ContractTerms:
    """The priced, dated commitment behind one site's reserve of one material."""

    contracted_qty: float
    valid_from: date | None = None  # None: today - valid_days_before when stored
    valid_to: date | None = None  # None: today + valid_days_after when stored
    standby_fee_minor_per_unit_day: float | None = None
    call_off_price_minor: int | None = None
    penalty_minor: int | None = None
    min_response_minutes: int | None = None


@dataclass(frozen=True)
class Site:
    site_id: str
    name: str
    owner_id: str
    owner_kind: str
    tier: str
    parent_site_id: str | None
    region: str
    grid_cell: str
    lat: float
    lon: float
    status: str = "active"
    trust: float = 1.0
    #: material id -> contract terms (contracted quantity and prices)
    materials: dict[str, ContractTerms] = field(default_factory=dict)
    #: postal address a carrier drives to, and whom it calls there; None: not stated
    address: str | None = None
    contact: Contact | None = None


@dataclass(frozen=True)
class Registry:
    materials: dict[str, Material]
    sites: dict[str, Site]
    valid_days_before: int = 30
    valid_days_after: int = 365

    def material_units(self) -> dict[str, str]:
        return {m.material_id: m.unit for m in self.materials.values()}

    def centralized(self) -> list[Site]:
        return [s for s in self.sites.values() if s.tier == "centralized"]


# ----------------------------------------------------------------------------- default contract
def default_terms(material: Material, site: Site, today: date, registry: Registry) -> dict[str, Any]:
    """Documented defaults for missing contract terms.

    Valid from ``today - 30 d`` to ``today + 365 d``; call-off price = the material's reference
    price; standby fee = 0.05 % of it per unit and day (at least 1 minor unit for consumables, 0.5
    for durables... rounded to 2 decimals); penalty for failing a call-off = 2 x price; minimum
    response time 120 min for centralized depots, 240 min for decentralized sites, 360 min for
    households.
    """
    price = int(material.reference_price_minor)
    if site.owner_kind == "household":
        response = 360
    elif site.tier == "centralized":
        response = 120
    else:
        response = 240
    return {
        "valid_from": today - timedelta(days=registry.valid_days_before),
        "valid_to": today + timedelta(days=registry.valid_days_after),
        "standby_fee_minor_per_unit_day": round(max(price * 0.0005, 0.01), 2),
        "call_off_price_minor": price,
        "penalty_minor": 2 * price,
        "min_response_minutes": response,
    }


def resolved_terms(registry: Registry, site: Site, material_id: str, today: date) -> dict[str, Any]:
    """Contract terms of one (site, material): the file's values over the defaults."""
    terms = site.materials[material_id]
    out = default_terms(registry.materials[material_id], site, today, registry)
    for name in TERM_FIELDS:
        value = getattr(terms, name)
        if value is not None:
            out[name] = value
    out["contracted_qty"] = terms.contracted_qty
    return out


def contract_id(site_id: str, material_id: str) -> str:
    """One contract per (site, material): a stable id so storing again updates, never duplicates."""
    return f"C-{site_id}-{material_id}"


# ------------------------------------------------------------------------------------ validation
def validate(registry: Registry) -> Registry:
    """Cross-checks a registry; raises :class:`RegistryError` naming the first problem found."""
    for m in registry.materials.values():
        if m.material_class not in MATERIAL_CLASSES:
            raise RegistryError(f"material {m.material_id!r}: unknown class {m.material_class!r} (one of {', '.join(MATERIAL_CLASSES)})")
        if m.reference_price_minor < 0:
            raise RegistryError(f"material {m.material_id!r}: negative reference_price_minor")
        if m.handling is not None and m.handling not in HANDLING_CLASSES:
            raise RegistryError(f"material {m.material_id!r}: unknown handling {m.handling!r} "
                                f"(one of {', '.join(HANDLING_CLASSES)})")
        for name in ("weight_kg_per_unit", "volume_m3_per_unit"):
            value = getattr(m, name)
            if value is not None and not value > 0:
                raise RegistryError(f"material {m.material_id!r}: {name} must be positive, got {value}")
    for s in registry.sites.values():
        where = f"site {s.site_id!r}"
        _check_id(s.site_id, where)
        if s.owner_kind not in OWNER_KINDS:
            raise RegistryError(f"{where}: unknown owner kind {s.owner_kind!r} (one of {', '.join(OWNER_KINDS)})")
        if s.tier not in TIERS:
            raise RegistryError(f"{where}: unknown tier {s.tier!r} (one of {', '.join(TIERS)})")
        if s.status not in STATUSES:
            raise RegistryError(f"{where}: unknown status {s.status!r} (one of {', '.join(STATUSES)})")
        if s.tier == "decentralized":
            if not s.parent_site_id:
                raise RegistryError(f"{where}: a decentralized site must name its centralized parent")
            parent = registry.sites.get(s.parent_site_id)
            if parent is None:
                raise RegistryError(f"{where}: parent {s.parent_site_id!r} is not in the registry")
            if parent.tier != "centralized":
                raise RegistryError(f"{where}: parent {s.parent_site_id!r} is not a centralized site")
        elif s.parent_site_id:
            raise RegistryError(f"{where}: a centralized site has no parent (got {s.parent_site_id!r})")
        if not (-90 <= s.lat <= 90) or not (-180 <= s.lon <= 180):
            raise RegistryError(f"{where}: lat/lon out of range ({s.lat}, {s.lon})")
        if not (0 <= s.trust <= 1):
            raise RegistryError(f"{where}: trust must be within 0..1, got {s.trust}")
        for material_id, terms in s.materials.items():
            if material_id not in registry.materials:
                raise RegistryError(f"{where}: unknown material {material_id!r}")
            if terms.contracted_qty < 0:
                raise RegistryError(f"{where}, {material_id}: negative contracted quantity {terms.contracted_qty:g}")
            for name in TERM_FIELDS[2:]:
                value = getattr(terms, name)
                if value is not None and value < 0:
                    raise RegistryError(f"{where}, {material_id}: negative {name} ({value})")
            if terms.valid_from and terms.valid_to and terms.valid_to < terms.valid_from:
                raise RegistryError(f"{where}, {material_id}: valid_to {terms.valid_to} before valid_from {terms.valid_from}")
    return registry


def _check_id(value: str, where: str) -> None:
    # Site ids are MQTT topic levels and MQTT user names: no wildcards, separators or spaces.
    if not value or any(c in value for c in "/+#$ \t\n:") or len(value) > 64:
        raise RegistryError(f"{where}: id must be 1-64 characters without / + # $ : or spaces")


# ------------------------------------------------------------------------------------ file I/O
def load_registry(path: str | Path) -> Registry:
    """Read and validate a registry YAML file; raises :class:`RegistryError` with the reason."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read registry {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # a binary file: one line, not a traceback
        raise RegistryError(f"{path}: not a UTF-8 text file (invalid byte at offset {exc.start})") from None
    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise RegistryError(f"{path}: not a registry: nested too deeply") from None
    try:
        return registry_from_dict(doc)
    except RegistryError as exc:
        raise RegistryError(f"{path}: {exc}") from None


def registry_from_dict(doc: Any) -> Registry:
    if not isinstance(doc, dict):
        raise RegistryError("top level must be a mapping with 'materials' and 'sites'")
    if doc.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise RegistryError(f"unsupported registry version {doc.get('version')!r}, expected {FORMAT_VERSION}")
    materials: dict[str, Material] = {}
    for i, raw in enumerate(_list(doc, "materials")):
        where = f"materials[{i}]"
        m = Material(
            material_id=_str(raw, "id", where),
            name=_str(raw, "name", where),
            unit=_str(raw, "unit", where),
            material_class=_str(raw, "class", where),
            consumable=_bool(raw, "consumable", where),
            reference_price_minor=_int(raw.get("reference_price_minor", 1000), f"{where}.reference_price_minor"),
            handling=None if raw.get("handling") is None else _str(raw, "handling", where),
            weight_kg_per_unit=_opt_num(raw, "weight_kg_per_unit", where),
            volume_m3_per_unit=_opt_num(raw, "volume_m3_per_unit", where),
        )
        _check_id(m.material_id, where)
        if m.material_id in materials:
            raise RegistryError(f"{where}: material {m.material_id!r} listed twice")
        materials[m.material_id] = m
    defaults = doc.get("contract_defaults") or {}
    if not isinstance(defaults, dict):
        raise RegistryError("contract_defaults must be a mapping")
    sites: dict[str, Site] = {}
    for i, raw in enumerate(_list(doc, "sites")):
        where = f"sites[{i}]"
        site_id = _str(raw, "id", where)
        where = f"sites[{i}] ({site_id})"
        mats_raw = raw.get("materials") or {}
        if not isinstance(mats_raw, dict):
            raise RegistryError(f"{where}: materials must be a mapping of material id to quantity or terms")
        mats = {str(k): _terms(v, f"{where}.materials.{k}") for k, v in mats_raw.items()}
        site = Site(
            site_id=site_id,
            name=_str(raw, "name", where),
            owner_id=_str(raw, "owner_id", where),
            owner_kind=_str(raw, "owner_kind", where),
            tier=_str(raw, "tier", where),
            parent_site_id=raw.get("parent") or None,
            region=_str(raw, "region", where),
            grid_cell=_str(raw, "grid_cell", where),
            lat=_num(raw.get("lat"), f"{where}.lat"),
            lon=_num(raw.get("lon"), f"{where}.lon"),
            status=str(raw.get("status", "active")),
            trust=_num(raw.get("trust", 1.0), f"{where}.trust"),
            materials=mats,
            address=None if raw.get("address") is None else _str(raw, "address", where),
            contact=_contact(raw.get("contact"), f"{where}.contact"),
        )
        if site_id in sites:
            raise RegistryError(f"{where}: site {site_id!r} listed twice")
        sites[site_id] = site
    return validate(
        Registry(
            materials=materials,
            sites=sites,
            valid_days_before=_int(defaults.get("valid_days_before", 30), "contract_defaults.valid_days_before"),
            valid_days_after=_int(defaults.get("valid_days_after", 365), "contract_defaults.valid_days_after"),
        )
    )


def registry_to_dict(registry: Registry) -> dict:
    def terms(t: ContractTerms) -> Any:
        extra = {n: getattr(t, n) for n in TERM_FIELDS if getattr(t, n) is not None}
        qty = int(t.contracted_qty) if float(t.contracted_qty).is_integer() else t.contracted_qty
        return {"contracted_qty": qty, **extra} if extra else qty

    return {
        "version": FORMAT_VERSION,
        "contract_defaults": {
            "valid_days_before": registry.valid_days_before,
            "valid_days_after": registry.valid_days_after,
        },
        "materials": [
            {
                "id": m.material_id,
                "name": m.name,
                "unit": m.unit,
                "class": m.material_class,
                "consumable": m.consumable,
                "reference_price_minor": m.reference_price_minor,
                **{k: getattr(m, k) for k in ("handling", "weight_kg_per_unit", "volume_m3_per_unit")
                   if getattr(m, k) is not None},
            }
            for m in registry.materials.values()
        ],
        "sites": [
            {
                "id": s.site_id,
                "name": s.name,
                "owner_id": s.owner_id,
                "owner_kind": s.owner_kind,
                "tier": s.tier,
                "parent": s.parent_site_id,
                "region": s.region,
                "grid_cell": s.grid_cell,
                "lat": s.lat,
                "lon": s.lon,
                "status": s.status,
                "trust": s.trust,
                "materials": {k: terms(v) for k, v in s.materials.items()},
                **({"address": s.address} if s.address is not None else {}),
                **({"contact": s.contact.model_dump(exclude_none=True)} if s.contact is not None else {}),
            }
            for s in registry.sites.values()
        ],
    }


def write_registry(registry: Registry, path: str | Path) -> Path:
    """Write a registry as YAML (one flow-style mapping per site keeps big files readable)."""
    import yaml

    path = Path(path)
    doc = registry_to_dict(registry)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    head = {k: v for k, v in doc.items() if k not in ("materials", "sites")}
    parts = [
        "# vreserve site registry (format: docs/ingest.md)\n",
        yaml.dump(head, Dumper=dumper, sort_keys=False),
        "materials:\n",
    ]
    for m in doc["materials"]:
        parts.append("  - " + yaml.dump(m, Dumper=dumper, sort_keys=False, default_flow_style=True, width=10_000))
    parts.append("sites:\n")
    for s in doc["sites"]:
        parts.append("  - " + yaml.dump(s, Dumper=dumper, sort_keys=False, default_flow_style=True, width=100_000))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts))
    return path


def _list(doc: dict, key: str) -> list:
    value = doc.get(key)
    if not isinstance(value, list):
        raise RegistryError(f"'{key}' must be a list")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise RegistryError(f"{key}[{i}] must be a mapping")
    return value


def _str(raw: dict, key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RegistryError(f"{where}: '{key}' must be a non-empty string")
    return value


def _bool(raw: dict, key: str, where: str) -> bool:
    value = raw.get(key)
    if not isinstance(value, bool):
        raise RegistryError(f"{where}: '{key}' must be true or false")
    return value


def _num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RegistryError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _opt_num(raw: dict, key: str, where: str) -> float | None:
    return None if raw.get(key) is None else _num(raw[key], f"{where}.{key}")


def _contact(raw: Any, where: str) -> Contact | None:
    if raw is None:
        return None
    try:
        return Contact.model_validate(raw)
    except ValidationError as exc:
        raise RegistryError(validation_reason(exc, where)) from None


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RegistryError(f"{where} must be an integer, got {value!r}")
    return value


def _date(value: Any, where: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise RegistryError(f"{where} must be a date YYYY-MM-DD, got {value!r}") from None


def _terms(raw: Any, where: str) -> ContractTerms:
    if not isinstance(raw, dict):
        return ContractTerms(contracted_qty=_num(raw, f"{where} (contracted quantity)"))
    unknown = set(raw) - {"contracted_qty", *TERM_FIELDS}
    if unknown:
        raise RegistryError(f"{where}: unknown contract term(s) {', '.join(sorted(unknown))}")
    opt = {n: raw.get(n) for n in TERM_FIELDS[2:]}
    return ContractTerms(
        contracted_qty=_num(raw.get("contracted_qty"), f"{where}.contracted_qty"),
        valid_from=_date(raw.get("valid_from"), f"{where}.valid_from"),
        valid_to=_date(raw.get("valid_to"), f"{where}.valid_to"),
        standby_fee_minor_per_unit_day=None if opt["standby_fee_minor_per_unit_day"] is None
        else _num(opt["standby_fee_minor_per_unit_day"], f"{where}.standby_fee_minor_per_unit_day"),
        call_off_price_minor=None if opt["call_off_price_minor"] is None else _int(opt["call_off_price_minor"], f"{where}.call_off_price_minor"),
        penalty_minor=None if opt["penalty_minor"] is None else _int(opt["penalty_minor"], f"{where}.penalty_minor"),
        min_response_minutes=None if opt["min_response_minutes"] is None else _int(opt["min_response_minutes"], f"{where}.min_response_minutes"),
    )


# ------------------------------------------------------------------------------------- generator
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
    lat0, lat1, lon0, lon1 = REGIONS.get(region, REGIONS["wuhan"])
    rows, cols = grid
    prefix = f"{region}-" if id_prefix is None else id_prefix
    n_central = max(1, min(n_sites, round(n_sites * centralized_share)))
    width = max(5, len(str(n_sites)))
    ordered = list(catalogue)
    sites: dict[str, Site] = {}
    centrals: list[Site] = []
    for i in range(n_sites):
        site_id = f"{prefix}{i + 1:0{width}d}"
        central = i < n_central
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
        mats = {}
        for m in held:
            base = _MATERIAL_SCALE.get(m, 1_000) * scale * rng.uniform(0.5, 1.5)
            mats[m] = ContractTerms(contracted_qty=float(max(1, round(base))))
        owner_no = rng.randint(1, max(1, n_sites // 5)) if kind in ("household",) else rng.randint(1, max(1, n_sites // 40))
        site = Site(
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
        sites[site_id] = site
        if central:
            centrals.append(site)
    # The scenario's materials must exist somewhere: give any missing one to the first depot.
    held_anywhere = {m for s in sites.values() for m in s.materials}
    for m in required_materials:
        if m not in held_anywhere:
            first = centrals[0]
            mats = dict(first.materials)
            mats[m] = ContractTerms(contracted_qty=float(_MATERIAL_SCALE.get(m, 1_000)))
            sites[first.site_id] = replace(first, materials=mats)
    return validate(Registry(materials=catalogue, sites=sites))


# -------------------------------------------------------------------------------- database adapter
def store_registry(conn, registry: Registry, today: date | None = None) -> dict[str, int]:
    """Upsert materials, sites, site_materials and one contract per (site, material), idempotently.

    Runs in one transaction with COPY into temporary tables and ``INSERT ... ON CONFLICT DO
    UPDATE``, so 10,000 sites x 20 materials store in seconds. Rows absent from the file are left
    alone (a registry file adds and updates; it does not delete). Returns row counts.
    """
    today = today or date.today()
    validate(registry)
    # Parents first so the self-referencing foreign key holds inside the COPY order as well.
    ordered = sorted(registry.sites.values(), key=lambda s: s.tier != "centralized")
    with conn.transaction():
        cur = conn.cursor()
        cur.execute(
            "CREATE TEMP TABLE _reg_materials (LIKE materials) ON COMMIT DROP;"
            "CREATE TEMP TABLE _reg_sites (LIKE sites) ON COMMIT DROP;"
            "CREATE TEMP TABLE _reg_site_materials (LIKE site_materials) ON COMMIT DROP;"
            "CREATE TEMP TABLE _reg_contracts (LIKE contracts) ON COMMIT DROP;"
        )
        with cur.copy("COPY _reg_materials (material_id, name, unit, class, consumable, handling,"
                      " weight_kg_per_unit, volume_m3_per_unit) FROM STDIN") as cp:
            for m in registry.materials.values():
                cp.write_row((m.material_id, m.name, m.unit, m.material_class, m.consumable, m.handling,
                              m.weight_kg_per_unit, m.volume_m3_per_unit))
        with cur.copy(
            "COPY _reg_sites (site_id, name, owner_id, owner_kind, tier, parent_site_id, region, grid_cell,"
            " lat, lon, status, trust, address, contact_name, contact_phone, contact_email) FROM STDIN"
        ) as cp:
            for s in ordered:
                c = s.contact
                cp.write_row((s.site_id, s.name, s.owner_id, s.owner_kind, s.tier, s.parent_site_id, s.region,
                              s.grid_cell, s.lat, s.lon, s.status, s.trust, s.address,
                              c and c.name, c and c.phone, c and c.email))
        with cur.copy("COPY _reg_site_materials (site_id, material_id, contracted_qty) FROM STDIN") as cp:
            for s in ordered:
                for material_id, terms in s.materials.items():
                    cp.write_row((s.site_id, material_id, terms.contracted_qty))
        with cur.copy(
            "COPY _reg_contracts (contract_id, site_id, material_id, committed_qty, valid_from, valid_to,"
            " standby_fee_minor_per_unit_day, call_off_price_minor_per_unit, min_response_minutes,"
            " penalty_minor_per_unit) FROM STDIN"
        ) as cp:
            for s in ordered:
                for material_id in s.materials:
                    t = resolved_terms(registry, s, material_id, today)
                    cp.write_row((contract_id(s.site_id, material_id), s.site_id, material_id, t["contracted_qty"],
                                  t["valid_from"], t["valid_to"], t["standby_fee_minor_per_unit_day"],
                                  t["call_off_price_minor"], t["min_response_minutes"], t["penalty_minor"]))
        counts = {}
        cur.execute(
            "INSERT INTO materials SELECT * FROM _reg_materials ON CONFLICT (material_id) DO UPDATE SET"
            " name = EXCLUDED.name, unit = EXCLUDED.unit, class = EXCLUDED.class, consumable = EXCLUDED.consumable,"
            " handling = EXCLUDED.handling, weight_kg_per_unit = EXCLUDED.weight_kg_per_unit,"
            " volume_m3_per_unit = EXCLUDED.volume_m3_per_unit"
        )
        counts["materials"] = cur.rowcount
        # Two passes over sites: centralized ones first (parents of the rest).
        for tier in ("centralized", "decentralized"):
            cur.execute(
                "INSERT INTO sites SELECT * FROM _reg_sites WHERE tier = %s ON CONFLICT (site_id) DO UPDATE SET"
                " name = EXCLUDED.name, owner_id = EXCLUDED.owner_id, owner_kind = EXCLUDED.owner_kind,"
                " tier = EXCLUDED.tier, parent_site_id = EXCLUDED.parent_site_id, region = EXCLUDED.region,"
                " grid_cell = EXCLUDED.grid_cell, lat = EXCLUDED.lat, lon = EXCLUDED.lon,"
                " status = EXCLUDED.status, trust = EXCLUDED.trust, address = EXCLUDED.address,"
                " contact_name = EXCLUDED.contact_name, contact_phone = EXCLUDED.contact_phone,"
                " contact_email = EXCLUDED.contact_email",
                (tier,),
            )
            counts["sites"] = counts.get("sites", 0) + cur.rowcount
        cur.execute(
            "INSERT INTO site_materials SELECT * FROM _reg_site_materials ON CONFLICT (site_id, material_id)"
            " DO UPDATE SET contracted_qty = EXCLUDED.contracted_qty"
        )
        counts["site_materials"] = cur.rowcount
        cur.execute(
            "INSERT INTO contracts SELECT * FROM _reg_contracts ON CONFLICT (contract_id) DO UPDATE SET"
            " committed_qty = EXCLUDED.committed_qty, valid_from = EXCLUDED.valid_from,"
            " valid_to = EXCLUDED.valid_to,"
            " standby_fee_minor_per_unit_day = EXCLUDED.standby_fee_minor_per_unit_day,"
            " call_off_price_minor_per_unit = EXCLUDED.call_off_price_minor_per_unit,"
            " min_response_minutes = EXCLUDED.min_response_minutes,"
            " penalty_minor_per_unit = EXCLUDED.penalty_minor_per_unit"
        )
        counts["contracts"] = cur.rowcount
    return counts


def load_known_from_db(conn) -> tuple[dict[str, str], dict[str, str]]:
    """What the bridge checks readings against: site id -> status, material id -> unit."""
    sites = dict(conn.execute("SELECT site_id, status FROM sites").fetchall())
    units = dict(conn.execute("SELECT material_id, unit FROM materials").fetchall())
    return sites, units
