"""Contracts file loading (YAML and CSV): all or nothing, every problem named, updates in place."""
from __future__ import annotations

from datetime import date

from click.testing import CliRunner

from supervision import cli as sup_cli
from vreserve.contracts import parse_items
from sv_helpers import add_contract, add_site


def _invoke(settings, *args):
    return CliRunner().invoke(sup_cli.contracts, list(args), obj=settings)


def test_parse_names_every_problem():
    contracts, errors = parse_items([
        {"site_id": "s", "material_id": "m", "committed_qty": 10, "valid_from": "2026-01-01", "valid_to": "2026-12-31"},
        {"site_id": "s", "material_id": "m", "committed_qty": -1, "valid_from": "2026-13-01", "valid_to": "2026-12-31",
         "penalty_minor_per_unit": 2.5, "colour": "red"},
        {"site_id": "s", "committed_qty": 1},
        {"site_id": "s", "material_id": "m", "committed_qty": 1, "valid_from": "2026-12-01", "valid_to": "2026-01-01",
         "penalty_grace_share": 1.5},
        "not a mapping",
    ])
    assert len(contracts) == 1 and contracts[0].committed_qty == 10
    text = "\n".join(map(str, errors))
    for expected in ("item 2: unknown field(s) colour", "item 2: valid_from '2026-13-01' is not a date",
                     "item 2: committed_qty must be a number >= 0", "item 2: penalty_minor_per_unit must be a whole number",
                     "item 3: missing material_id, valid_from, valid_to", "item 4: valid_to 2026-01-01 is before",
                     "item 4: penalty_grace_share must be below 1", "item 5: want a mapping"):
        assert expected in text, text


def test_load_yaml_updates_registry_default_and_csv_adds(conn, world, settings, tmp_path):
    s1, s2 = f"K1-{world.u}", f"K2-{world.u}"
    add_site(conn, world, s1, "o1")
    add_site(conn, world, s2, "o2")
    # what the registry loader writes: one contract per (site, material) with default terms
    add_contract(conn, f"C-{s1}-{world.masks}", s1, world.masks, 100, date(2026, 1, 1), date(2026, 12, 31),
                 standby=0.1, call_off=100, penalty=200)
    y = tmp_path / "contracts.yaml"
    y.write_text(f"""
contracts:
  - site_id: {s1}
    material_id: {world.masks}
    committed_qty: 250
    valid_from: 2026-01-01
    valid_to: 2026-12-31
    standby_fee_minor_per_unit_day: 0.5
    call_off_price_minor_per_unit: 180
    min_response_minutes: 90
    penalty_minor_per_unit: 360
    penalty_grace_share: 0.05
    late_penalty_minor_per_unit: 15
  - {{contract_id: X-{world.u}, site_id: {s2}, material_id: {world.water}, committed_qty: 5000,
      valid_from: 2026-06-01, valid_to: 2027-05-31, call_off_price_minor_per_unit: 3}}
""")
    res = _invoke(settings, "load", str(y))
    assert res.exit_code == 0, res.output
    assert "1 contract(s) added, 1 updated" in res.output
    row = conn.execute("SELECT committed_qty, call_off_price_minor_per_unit, penalty_minor_per_unit,"
                       " min_response_minutes FROM contracts WHERE contract_id = %s",
                       (f"C-{s1}-{world.masks}",)).fetchone()
    assert (float(row[0]), row[1], row[2], row[3]) == (250.0, 180, 360, 90)
    assert conn.execute("SELECT late_penalty_minor_per_unit FROM contract_penalty_terms WHERE contract_id = %s",
                        (f"C-{s1}-{world.masks}",)).fetchone()[0] == 15
    # loading the same file again changes nothing but says it updated both
    assert "0 contract(s) added, 2 updated" in _invoke(settings, "load", str(y)).output

    c = tmp_path / "more.csv"
    c.write_text("site_id,material_id,committed_qty,valid_from,valid_to,call_off_price_minor_per_unit\n"
                 f"{s2},{world.masks},40,2026-01-01,2026-12-31,90\n")
    res = _invoke(settings, "load", str(c))
    assert res.exit_code == 0 and "1 contract(s) added" in res.output, res.output

    listing = _invoke(settings, "--site", s2)
    assert listing.exit_code == 0 and f"X-{world.u}" in listing.output and "minor" in listing.output
    assert "2 contract(s)" in listing.output


def test_bad_files_load_nothing(conn, world, settings, tmp_path):
    s1 = f"K3-{world.u}"
    add_site(conn, world, s1, "o1")
    before = conn.execute("SELECT count(*) FROM contracts").fetchone()[0]
    c = tmp_path / "bad.csv"
    c.write_text("site_id,material_id,committed_qty,valid_from,valid_to\n"
                 f"{s1},{world.masks},40,2026-01-01,2026-12-31\n"
                 f"nosuch-{world.u},{world.masks},40,2026-01-01,2026-12-31\n")
    res = _invoke(settings, "load", str(c))
    assert res.exit_code == 1 and f"row 2: unknown site 'nosuch-{world.u}'" in res.output and "nothing loaded" in res.output
    # two overlapping contracts for one (site, material) in one file: rolled back as a whole
    y = tmp_path / "overlap.yaml"
    y.write_text(f"""
- {{contract_id: A-{world.u}, site_id: {s1}, material_id: {world.masks}, committed_qty: 1, valid_from: 2026-01-01, valid_to: 2026-06-30}}
- {{contract_id: B-{world.u}, site_id: {s1}, material_id: {world.masks}, committed_qty: 1, valid_from: 2026-06-01, valid_to: 2026-12-31}}
""")
    res = _invoke(settings, "load", str(y))
    assert res.exit_code == 1 and f"contract B-{world.u} overlaps A-{world.u}" in res.output
    assert conn.execute("SELECT count(*) FROM contracts").fetchone()[0] == before
    for text, msg in (("{{{", "not valid YAML"), ("just a string", "want a list")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        res = _invoke(settings, "load", str(bad))
        assert res.exit_code == 1 and msg in res.output
    res = _invoke(settings, "load", str(tmp_path / "missing.yaml"))
    assert res.exit_code == 1 and "cannot read" in res.output


def test_a_site_is_planned_from_only_under_a_valid_contract(conn, world, settings, tmp_path):
    """Expired contract: the planner's snapshot leaves the site out; a loaded contract brings it back."""
    from datetime import datetime, timedelta, timezone

    from dispatcher.snapshot import supply_snapshot
    from sv_helpers import add_stock

    now = datetime.now(timezone.utc)
    site = f"K4-{world.u}"
    add_site(conn, world, site, "o4")
    add_stock(conn, site, world.masks, 500, "box")
    add_contract(conn, f"C-{site}-{world.masks}", site, world.masks, 400, now.date() - timedelta(days=400),
                 now.date() - timedelta(days=1))
    assert [r for r in supply_snapshot(conn, world.region, now) if r.site_id == site] == []
    y = tmp_path / "renew.yaml"
    y.write_text(f"- {{site_id: {site}, material_id: {world.masks}, committed_qty: 300,"
                 f" valid_from: {now.date()}, valid_to: {now.date() + timedelta(days=365)}}}\n")
    res = _invoke(settings, "load", str(y))
    assert res.exit_code == 0 and "1 contract(s) added" in res.output, res.output
    rows = [r for r in supply_snapshot(conn, world.region, now) if r.site_id == site]
    assert [(r.committed, r.available) for r in rows] == [(300.0, 300)]   # min(reported 500, committed 300)
