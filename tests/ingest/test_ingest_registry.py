"""Registry: generator shape, YAML round trip, clear errors on broken files, idempotent store."""
from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from vreserve.registry import OWNER_KINDS, RegistryError, contract_id, load_registry, registry_to_dict, write_registry
from vreserve.registry_generate import generate_registry
from vreserve.registry_store import store_registry
from vreserve.db import connect


def test_generator_makes_a_realistic_city_registry() -> None:
    reg = generate_registry(400, seed=3)
    tiers = Counter(s.tier for s in reg.sites.values())
    assert 0.01 * 400 <= tiers["centralized"] <= 0.06 * 400
    assert tiers["centralized"] + tiers["decentralized"] == 400
    assert set(Counter(s.owner_kind for s in reg.sites.values())) == set(OWNER_KINDS)
    for s in reg.sites.values():
        if s.tier == "decentralized":
            assert reg.sites[s.parent_site_id].tier == "centralized"
        assert 30.4 <= s.lat <= 30.8 and 114.05 <= s.lon <= 114.6
        assert s.grid_cell.startswith("wuhan-r") and s.materials
    held = {m for s in reg.sites.values() for m in s.materials}
    assert {"medicine", "medical_alcohol", "ventilator", "pork"} <= held
    assert len({s.grid_cell for s in reg.sites.values()}) > 50  # spread over the city grid
    # Deterministic per seed, different across seeds.
    assert generate_registry(400, seed=3) == reg
    assert generate_registry(400, seed=4) != reg


def test_yaml_round_trip(tmp_path: Path) -> None:
    reg = generate_registry(60, seed=1)
    path = write_registry(reg, tmp_path / "reg.yaml")
    assert load_registry(path) == reg


def _broken(tmp_path: Path, mutate) -> Path:
    doc = registry_to_dict(generate_registry(10, seed=1))
    mutate(doc)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["sites"][3].update(owner_kind="pirate"), "unknown owner kind 'pirate'"),
        (lambda d: d["sites"][3].update(parent=None), "must name its centralized parent"),
        (lambda d: d["sites"][3].update(parent="nowhere"), "parent 'nowhere' is not in the registry"),
        (lambda d: d["sites"][3].update(parent=d["sites"][4]["id"]), "is not a centralized site"),
        (lambda d: d["sites"][3]["materials"].update(medicine=-5), "negative contracted quantity"),
        (lambda d: d["sites"][3]["materials"].update(unobtainium=5), "unknown material 'unobtainium'"),
        (lambda d: d["sites"][3].update(lat="north"), "lat must be a finite number"),
        (lambda d: d["sites"][3].update(id="a/b"), "id must be"),
        (lambda d: d["sites"].append(dict(d["sites"][2])), "listed twice"),
        (lambda d: d["materials"][0].update({"class": "weapons"}), "unknown class 'weapons'"),
        (lambda d: d["sites"][3]["materials"].update(medicine={"contracted_qty": 1, "penalty_minor": -1}), "negative penalty_minor"),
        (lambda d: d["sites"][3]["materials"].update(medicine={"contracted_qty": 1, "bonus": 3}), "unknown contract term"),
        (lambda d: d.update(version=9), "unsupported registry version"),
        (lambda d: d["sites"][3].update(adress="1 Road"), "adress: unknown field"),
        (lambda d: d["materials"][0].update(weight_kg=1), "weight_kg: unknown field"),
        (lambda d: d.update(site=[]), "site: unknown field"),
        (lambda d: d["materials"][0].update(handling="warm"), "unknown handling 'warm'"),
        (lambda d: d["materials"][0].update(volume_m3_per_unit=0), "volume_m3_per_unit must be positive"),
        (lambda d: d["sites"][3].update(contact={"name": "desk", "fax": "1"}), "contact.fax: unknown field"),
    ],
)
def test_broken_files_get_clear_errors(tmp_path: Path, mutate, message: str) -> None:
    with pytest.raises(RegistryError, match=message.replace("(", r"\(")):
        load_registry(_broken(tmp_path, mutate))


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sites: [unclosed")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(bad)
    with pytest.raises(RegistryError, match="cannot read registry"):
        load_registry(tmp_path / "absent.yaml")


@pytest.mark.services
def test_store_is_idempotent_and_writes_contracts(settings, unique: str, tmp_path: Path) -> None:
    reg = generate_registry(30, seed=2, id_prefix=f"r{unique}-")
    site = next(s for s in reg.sites.values() if s.tier == "decentralized")
    doc = registry_to_dict(reg)
    entry = next(e for e in doc["sites"] if e["id"] == site.site_id)
    material = next(iter(entry["materials"]))
    entry["materials"][material] = {"contracted_qty": 77, "call_off_price_minor": 1234,
                                    "valid_from": "2026-01-01", "valid_to": "2026-12-31"}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc))
    reg = load_registry(path)
    pairs = sum(len(s.materials) for s in reg.sites.values())
    today = date(2026, 11, 22)
    with connect(settings.pg_dsn) as conn:
        store_registry(conn, reg, today=today)
        store_registry(conn, reg, today=today)  # again: nothing duplicated
        like = f"r{unique}-%"
        n_sites = conn.execute("SELECT count(*) FROM sites WHERE site_id LIKE %s", (like,)).fetchone()[0]
        n_sm = conn.execute("SELECT count(*) FROM site_materials WHERE site_id LIKE %s", (like,)).fetchone()[0]
        n_c = conn.execute("SELECT count(*) FROM contracts WHERE site_id LIKE %s", (like,)).fetchone()[0]
        assert (n_sites, n_sm, n_c) == (30, pairs, pairs)
        row = conn.execute(
            "SELECT committed_qty, call_off_price_minor_per_unit, valid_from, valid_to FROM contracts WHERE contract_id = %s",
            (contract_id(site.site_id, material),),
        ).fetchone()
        assert (float(row[0]), row[1], row[2], row[3]) == (77.0, 1234, date(2026, 1, 1), date(2026, 12, 31))
        other = next(m for m in site.materials if m != material) if len(site.materials) > 1 else None
        if other:
            vf, vt, price = conn.execute(
                "SELECT valid_from, valid_to, call_off_price_minor_per_unit FROM contracts WHERE contract_id = %s",
                (contract_id(site.site_id, other),),
            ).fetchone()
            assert (vf, vt) == (today - timedelta(days=30), today + timedelta(days=365))
            assert price == reg.materials[other].reference_price_minor
        parent = conn.execute("SELECT parent_site_id FROM sites WHERE site_id = %s", (site.site_id,)).fetchone()[0]
        assert parent == site.parent_site_id
