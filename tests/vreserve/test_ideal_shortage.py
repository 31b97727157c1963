"""The ideal shortage per material (vreserve/ideal_shortage.py): horizon figures in the registry's
units, the rates, and a demand source that is never a path the caller names (no services needed)."""
from __future__ import annotations

from vreserve.ideal_shortage import PreviewError, horizon_figures, ideal_rates, load_demand, to_registry_units


def test_ideal_shortage_in_registry_units(tmp_path):
    scenario = {"periods": 2, "materials": [{"id": "alcohol", "unit": "bottles (500 ml)"}, {"id": "mask", "unit": "piece"}],
                "rescue_centres": [{"id": "R1", "demand": {"alcohol": [100, 100], "mask": 50}}],
                "distribution_centres": [{"id": "D1", "initial": {"alcohol": 40, "mask": 10}, "safety_stock": {"alcohol": 20}}]}
    figures = horizon_figures(scenario, 2, 1.0)
    assert figures["alcohol"]["demand"] == 200 and figures["alcohol"]["centres_usable"] == 20
    notes = to_registry_units(figures, {"alcohol": "litre", "mask": "piece"})
    assert figures["alcohol"]["demand"] == 100 and figures["alcohol"]["unit"] == "litre" and notes == []
    out = ideal_rates(figures, {"alcohol": 30.0, "mask": 200.0})
    assert out["alcohol"]["ideal_shortage"] == 100 - 10 - 30
    assert abs(out["alcohol"]["ideal_shortage_rate"] - 0.6) < 1e-9
    assert out["mask"]["ideal_shortage"] == 0


def test_preview_never_reads_a_path_the_caller_names(tmp_path):
    for bad in ("/etc/passwd", "../wuhan", "packs/wuhan"):
        try:
            load_demand(bad, tmp_path, 1)
        except PreviewError as exc:
            assert exc.code == "bad_demand_source"
        else:
            raise AssertionError(f"{bad!r} was accepted")
    assert load_demand("wuhan", tmp_path, 2)["periods"] >= 2
