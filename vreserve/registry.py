"""The site registry's domain model and file contract: materials catalogue, storage sites, what each
site commits to the reserve (shared by every stage; the generator is :mod:`vreserve.registry_generate`,
the database adapter :mod:`vreserve.registry_store`). The file format is YAML (``docs/ingest.md``)::

    version: 1
    materials:
      - {id: medicine, name: Medicine (boxed), unit: box, class: medical, consumable: true,
         reference_price_minor: 8000}
    contract_defaults: {valid_days_before: 30, valid_days_after: 365}   # optional
    sites:
      - {id: wuhan-00001, name: ..., owner_id: ..., owner_kind: government, tier: centralized,
         parent: null, region: wuhan, grid_cell: wuhan-r03c07, lat: 30.59, lon: 114.30,
         status: active, trust: 1.0,
         materials: {medicine: 1200, ventilator: {contracted_qty: 20, call_off_price_minor_per_unit: 250000}}}

A site's material entry is either the contracted quantity or a mapping with ``contracted_qty``
and optional contract terms (named as in :class:`vreserve.contract_terms.ContractTerms`; the older
``call_off_price_minor`` / ``penalty_minor`` are still read); missing terms get the documented
defaults (:func:`default_terms`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vreserve.contract_terms import ContractTerms
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
    "call_off_price_minor_per_unit",
    "penalty_minor_per_unit",
    "min_response_minutes",
)
#: Names registry files written before the terms took the contracts' names use; still read.
TERM_ALIASES = {"call_off_price_minor": "call_off_price_minor_per_unit", "penalty_minor": "penalty_minor_per_unit"}
FORMAT_VERSION = 1
#: The names each part of a registry file may use (the project's own files refuse unknown names).
TOP_KEYS = frozenset({"version", "materials", "sites", "contract_defaults"})
DEFAULTS_KEYS = frozenset({"valid_days_before", "valid_days_after"})
MATERIAL_KEYS = frozenset({"id", "name", "unit", "class", "consumable", "reference_price_minor", "handling",
                           "weight_kg_per_unit", "volume_m3_per_unit"})
SITE_KEYS = frozenset({"id", "name", "owner_id", "owner_kind", "tier", "parent", "region", "grid_cell", "lat", "lon",
                       "status", "trust", "materials", "address", "contact"})


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
class SiteMaterial:
    """What a site commits of one material in the registry file: the contracted quantity and the
    contract terms the file states (None: the documented default, :func:`default_terms`)."""

    contracted_qty: float
    valid_from: date | None = None  # None: today - valid_days_before when stored
    valid_to: date | None = None  # None: today + valid_days_after when stored
    standby_fee_minor_per_unit_day: float | None = None
    call_off_price_minor_per_unit: int | None = None
    penalty_minor_per_unit: int | None = None
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
    materials: dict[str, SiteMaterial] = field(default_factory=dict)
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
        "call_off_price_minor_per_unit": price,
        "penalty_minor_per_unit": 2 * price,
        "min_response_minutes": response,
    }


def resolved_terms(registry: Registry, site: Site, material_id: str, today: date) -> ContractTerms:
    """The contract of one (site, material): the file's terms over the defaults."""
    terms = site.materials[material_id]
    out = default_terms(registry.materials[material_id], site, today, registry)
    for name in TERM_FIELDS:
        value = getattr(terms, name)
        if value is not None:
            out[name] = value
    return ContractTerms(contract_id=contract_id(site.site_id, material_id), site_id=site.site_id,
                         material_id=material_id, committed_qty=Decimal(str(terms.contracted_qty)), **out)


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
    _known(doc, TOP_KEYS, "registry")
    materials: dict[str, Material] = {}
    for i, raw in enumerate(_list(doc, "materials")):
        where = f"materials[{i}]"
        _known(raw, MATERIAL_KEYS, where)
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
    _known(defaults, DEFAULTS_KEYS, "contract_defaults")
    sites: dict[str, Site] = {}
    for i, raw in enumerate(_list(doc, "sites")):
        where = f"sites[{i}]"
        site_id = _str(raw, "id", where)
        where = f"sites[{i}] ({site_id})"
        _known(raw, SITE_KEYS, where)
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
    def terms(t: SiteMaterial) -> Any:
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


def _known(raw: dict, allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in set(raw) - allowed)
    if unknown:
        raise RegistryError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")


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


def _terms(raw: Any, where: str) -> SiteMaterial:
    if not isinstance(raw, dict):
        return SiteMaterial(contracted_qty=_num(raw, f"{where} (contracted quantity)"))
    unknown = set(raw) - {"contracted_qty", *TERM_FIELDS, *TERM_ALIASES}
    if unknown:
        raise RegistryError(f"{where}: unknown contract term(s) {', '.join(sorted(unknown))}")
    raw = {TERM_ALIASES.get(k, k): v for k, v in raw.items()}
    opt = {n: raw.get(n) for n in TERM_FIELDS[2:]}
    return SiteMaterial(
        contracted_qty=_num(raw.get("contracted_qty"), f"{where}.contracted_qty"),
        valid_from=_date(raw.get("valid_from"), f"{where}.valid_from"),
        valid_to=_date(raw.get("valid_to"), f"{where}.valid_to"),
        standby_fee_minor_per_unit_day=None if opt["standby_fee_minor_per_unit_day"] is None
        else _num(opt["standby_fee_minor_per_unit_day"], f"{where}.standby_fee_minor_per_unit_day"),
        **{n: None if opt[n] is None else _int(opt[n], f"{where}.{n}")
           for n in ("call_off_price_minor_per_unit", "penalty_minor_per_unit", "min_response_minutes")},
    )
