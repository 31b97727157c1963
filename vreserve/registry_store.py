"""The registry's one database adapter: store a registry (idempotent upsert), read what the bridge
checks readings against."""
from __future__ import annotations

from datetime import date

from vreserve.registry import Registry, resolved_terms, validate

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
        _copy_to_temp_tables(cur, registry, ordered, today)
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


def _copy_to_temp_tables(cur, registry: Registry, ordered: list, today: date) -> None:
    """COPY the registry into temporary tables shaped like the real ones (dropped at commit)."""
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
                cp.write_row((t.contract_id, s.site_id, material_id, t.committed_qty, t.valid_from, t.valid_to,
                              t.standby_fee_minor_per_unit_day, t.call_off_price_minor_per_unit,
                              t.min_response_minutes, t.penalty_minor_per_unit))
