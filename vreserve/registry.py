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
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, StrictInt, StringConstraints, ValidationError
from pydantic import model_validator
import yaml

from vreserve.contract_terms import ContractTerms
from vreserve.schemas.common import Frozen, validation_reason
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

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read registry {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # a binary file: one line, not a traceback
        raise RegistryError(f"{path}: not a UTF-8 text file (invalid byte at offset {exc.start})") from None
    return registry_from_text(text, str(path))


def registry_from_text(text: str, name: str) -> Registry:
    """Parse and validate a registry file's text (YAML or JSON); ``name`` says which file in errors.
    The CLI (a path) and the API (an upload) both read here."""

    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise RegistryError(f"{name}: not valid YAML: {exc}") from None
    except RecursionError:
        raise RegistryError(f"{name}: not a registry: nested too deeply") from None
    try:
        return registry_from_dict(doc)
    except RegistryError as exc:
        raise RegistryError(f"{name}: {exc}") from None


# ------------------------------------------------------------------------------ the file's models
def _finite(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return float(value)


def _site_id(value: Any) -> Any:
    # Site ids are MQTT topic levels and MQTT user names: no wildcards, separators or spaces.
    if isinstance(value, str) and (any(c in value for c in "/+#$ \t\n:") or len(value) > 64):
        raise ValueError("must be 1-64 characters without / + # $ : or spaces")
    return value


_Finite = Annotated[float, BeforeValidator(_finite)]
_Name = Annotated[str, StringConstraints(strict=True, min_length=1, strip_whitespace=False)]
_Id = Annotated[_Name, AfterValidator(_site_id)]
_Whole = Annotated[StrictInt, Field()]


class _TermsEntry(Frozen):
    """A site's material as a mapping: the contracted quantity and any contract terms."""

    contracted_qty: _Finite
    valid_from: date | None = None
    valid_to: date | None = None
    standby_fee_minor_per_unit_day: _Finite | None = None
    call_off_price_minor_per_unit: _Whole | None = None
    penalty_minor_per_unit: _Whole | None = None
    min_response_minutes: _Whole | None = None

    @model_validator(mode="before")
    @classmethod
    def _named_terms(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):  # a bare number is the contracted quantity
            return {"contracted_qty": raw}
        unknown = sorted(str(k) for k in set(raw) - {"contracted_qty", *TERM_FIELDS, *TERM_ALIASES})
        if unknown:
            raise ValueError(f"unknown contract term(s) {', '.join(unknown)}")
        return {TERM_ALIASES.get(k, k): v for k, v in raw.items()}


class _MaterialEntry(Frozen):
    id: _Id
    name: _Name
    unit: _Name
    class_: _Name = Field(alias="class")
    consumable: StrictBool
    reference_price_minor: _Whole = 1000
    handling: _Name | None = None
    weight_kg_per_unit: _Finite | None = None
    volume_m3_per_unit: _Finite | None = None


class _SiteEntry(Frozen):
    id: _Id
    name: _Name
    owner_id: _Name
    owner_kind: _Name
    tier: _Name
    parent: str | None = None
    region: _Name
    grid_cell: _Name
    lat: _Finite
    lon: _Finite
    status: _Name = "active"
    trust: _Finite = 1.0
    materials: dict[str, _TermsEntry] = Field(default_factory=dict)
    address: _Name | None = None
    contact: Contact | None = None


class _Defaults(Frozen):
    valid_days_before: _Whole = 30
    valid_days_after: _Whole = 365


class _RegistryFile(Frozen):
    """A registry file as written (docs/ingest.md); unknown names anywhere are refused."""

    version: Literal[1] = FORMAT_VERSION
    materials: list[_MaterialEntry]
    sites: list[_SiteEntry]
    contract_defaults: _Defaults = Field(default_factory=_Defaults)

    @model_validator(mode="after")
    def _ids_once(self) -> "_RegistryFile":
        for kind, entries in (("material", self.materials), ("site", self.sites)):
            seen: set[str] = set()
            for i, e in enumerate(entries):
                if e.id in seen:
                    raise ValueError(f"{kind}s[{i}]: {kind} {e.id!r} listed twice")
                seen.add(e.id)
        return self


def registry_from_dict(doc: Any) -> Registry:
    """The registry a file's contents describe, checked (:func:`validate`); :class:`RegistryError`
    names the field and the reason."""
    if not isinstance(doc, dict):
        raise RegistryError("top level must be a mapping with 'materials' and 'sites'")
    if doc.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise RegistryError(f"unsupported registry version {doc.get('version')!r}, expected {FORMAT_VERSION}")
    try:
        f = _RegistryFile.model_validate(doc)
    except ValidationError as exc:
        raise RegistryError(_located(exc, doc)) from None
    materials = {m.id: Material(m.id, m.name, m.unit, m.class_, m.consumable, m.reference_price_minor, m.handling,
                                m.weight_kg_per_unit, m.volume_m3_per_unit) for m in f.materials}
    sites = {s.id: Site(site_id=s.id, name=s.name, owner_id=s.owner_id, owner_kind=s.owner_kind, tier=s.tier,
                        parent_site_id=s.parent or None, region=s.region, grid_cell=s.grid_cell, lat=s.lat, lon=s.lon,
                        status=s.status, trust=s.trust, address=s.address, contact=s.contact,
                        materials={k: SiteMaterial(**t.model_dump()) for k, t in s.materials.items()})
             for s in f.sites}
    return validate(Registry(materials=materials, sites=sites, valid_days_before=f.contract_defaults.valid_days_before,
                             valid_days_after=f.contract_defaults.valid_days_after))


def _located(exc: ValidationError, doc: dict) -> str:
    """The reason, with each site named by its id as well as its index (``sites[3] (wuhan-00004)``)."""
    text_ = validation_reason(exc)
    sites = doc.get("sites") if isinstance(doc.get("sites"), list) else []
    for i, raw in enumerate(sites):
        if isinstance(raw, dict) and isinstance(raw.get("id"), str) and f"sites[{i}]" in text_:
            text_ = text_.replace(f"sites[{i}]", f"sites[{i}] ({raw['id'][:64]})")
    return text_


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
