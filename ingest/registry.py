"""The site registry as the ingest stage's commands use it (``vreserve registry generate | load``).

The registry is shared by every stage, so it lives in :mod:`vreserve.registry` (domain model and
file contract), :mod:`vreserve.registry_generate` (the generator) and :mod:`vreserve.registry_store`
(the database adapter); this module names them for the ingest stage's callers.
"""
from __future__ import annotations

from vreserve.registry import (  # noqa: F401 (re-exported)
    FORMAT_VERSION,
    MATERIAL_CLASSES,
    OWNER_KINDS,
    STATUSES,
    TERM_FIELDS,
    TIERS,
    Material,
    Registry,
    RegistryError,
    Site,
    SiteMaterial,
    contract_id,
    default_terms,
    load_registry,
    registry_from_dict,
    registry_to_dict,
    resolved_terms,
    validate,
    write_registry,
)
from vreserve.registry_generate import CATALOGUE, REGIONS, generate_registry  # noqa: F401 (re-exported)
from vreserve.registry_store import load_known_from_db, store_registry  # noqa: F401 (re-exported)
