"""The flow drawing (console/static/flows.js) in a real browser with a plan's flows whose ends all
have positions: one line per arc of the chosen material, wider for a larger quantity, each place
once, and a legend that states the quantities with thousands separators and the material's unit."""
from __future__ import annotations

import pytest

from tests.console.conftest import console_page, login

pytestmark = [pytest.mark.services, pytest.mark.slow]

FLOWS = {
    "flows": [
        {"leg": "supply", "origin": "S-1", "destination": "DC1", "material_id": "mask", "qty": 12000, "unit": "piece", "orders": 2},
        {"leg": "supply", "origin": "S-2", "destination": "DC1", "material_id": "mask", "qty": 750, "unit": "piece", "orders": 1},
        {"leg": "delivery", "origin": "DC1", "destination": "RC-a", "material_id": "mask", "qty": 3000, "unit": "piece", "orders": 1},
        {"leg": "supply", "origin": "S-1", "destination": "DC1", "material_id": "pork", "qty": 40, "unit": "kg", "orders": 1},
    ],
    "places": {
        "S-1": {"place_id": "S-1", "kind": "site", "name": "Depot 1", "lat": 30.70, "lon": 114.10},
        "S-2": {"place_id": "S-2", "kind": "site", "name": "Depot 2", "lat": 30.50, "lon": 114.05},
        "DC1": {"place_id": "DC1", "kind": "distribution_centre", "name": "Centre 1", "lat": 30.62, "lon": 114.14},
        "RC-a": {"place_id": "RC-a", "kind": "rescue_centre", "name": "District A", "lat": 30.60, "lon": 114.31},
    },
    "unplaced": {"flows": 1, "qty_by_material": {"mask": {"qty": 1500, "unit": "piece"}}, "ends_without_position": ["RC-x"]},
}

DRAW = """async (data) => {
  const f = await import('/console/static/flows.js');
  const box = document.createElement('div');
  box.id = 'flow-test'; box.style.cssText = 'width:700px;height:420px';
  document.body.prepend(box);
  const map = L.map(box, { attributionControl: false });
  const layer = f.flowLayer(data, 'mask').addTo(map);
  map.fitBounds(layer.getBounds(), { padding: [20, 20] });
  box.after(f.flowLegend(data, 'mask'), f.unplacedNote(data));
  return f.flowMaterials(data).map((m) => `${m.material_id} (${m.unit})`);
}"""


def test_flows_of_one_material_drawn_with_width_by_quantity_and_a_legend_in_its_unit(fleet, browser, shots):
    with console_page(browser) as (page, errors):
        login(page, fleet, "viewer1")
        materials = page.evaluate(DRAW, FLOWS)
        assert materials == ["mask (piece)", "pork (kg)"]
        lines = page.locator("#flow-test path.vr-flow")
        assert lines.count() == 3  # the mask arcs only
        strokes = page.eval_on_selector_all("#flow-test path.vr-flow", "els => els.map(e => Number(e.getAttribute('stroke-width')))")
        assert strokes[0] > strokes[2] > strokes[1], strokes  # 12,000 > 3,000 > 750 piece
        assert page.locator("#flow-test path.vr-flow-delivery").count() == 1
        assert page.locator("#flow-test path.vr-place-distribution_centre").count() == 1
        assert page.locator("#flow-test path.vr-place-site").count() == 2
        legend = page.get_by_role("group", name="Flow legend")
        text = legend.inner_text()
        assert "12,000 piece" in text and "3,000 piece" in text and "in piece" in text, text
        note = page.get_by_role("note").inner_text()
        assert "1 arc not drawn: no position for RC-x (1,500 piece mask)" in note, note
        page.locator("#flow-test").screenshot(path=str(shots / "flows-drawing.png"))
        assert not errors, errors
