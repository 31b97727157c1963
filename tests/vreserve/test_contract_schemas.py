"""The published contracts (docs/schemas/, docs/asyncapi.yaml) are what the models say, and the
records the code writes validate against them (a schema that describes nothing real fails here)."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from vreserve import topics
from vreserve.schemas.alerts import Alert
from vreserve.schemas.audits import AuditCount, AuditRecord
from vreserve.schemas.common import utc_now
from vreserve.schemas.dispatch import (CancelRecord, CarrierDetails, DemandUpdate, DispatchOrder, MaterialDetails,
                                       ModeError, ModeEvent, OrderEnd, OrderStatus, PlanSummary, StatusError,
                                       TimeWindow)
from vreserve.schemas.export import differences
from vreserve.schemas.readings import DeadLetter, Reading, ReadingBatch, StockReport
from vreserve.schemas.site_commands import PickAnswer, PickCommand, SiteStatus

DOCS = Path(__file__).resolve().parents[2] / "docs"
NOW = utc_now().replace(microsecond=0)


def schema(name: str) -> Draft202012Validator:
    doc = json.loads((DOCS / "schemas" / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(doc)
    return Draft202012Validator(doc)


def order(details: bool) -> DispatchOrder:
    d = CarrierDetails(
        origin_place=OrderEnd(id="w-1", kind="site", name="Depot 1", address="1 Road", lat=30.5, lon=114.3),
        destination_place=OrderEnd(id="DC1", kind="distribution_centre", name="DC 1"),
        pick_window=TimeWindow(start=NOW, end=NOW + timedelta(minutes=5)),
        delivery_window=TimeWindow(start=NOW, end=NOW + timedelta(minutes=5)), accept_by=None,
        material_details=MaterialDetails(name="Frozen pork", handling="frozen", weight_kg_per_unit=1.0,
                                         volume_m3_per_unit=0.0012), total_weight_kg=5.0, total_volume_m3=0.006)
    return DispatchOrder("O-1", "P-1", "E-1", "r", 1, "supply", "w-1", "DC1", "pork", 5.0, "kg", NOW,
                         d if details else None)


REPORT = StockReport("s1", NOW, 3, (Reading("pork", 2.0, "kg", {"sensor": "shelf-2"}),), extra={"battery_pct": 81})
SAMPLES = {
    "stock-report": [REPORT.to_payload()],
    "readings": [json.loads(ReadingBatch(REPORT, NOW, "vr/v1/sites/s1/stock").to_json())],
    "dead-letter": [DeadLetter("mqtt", "why", b"\xff raw", NOW, "vr/v1/sites/s1/stock", {"partition": 1}).to_payload()],
    "site-status": [SiteStatus("s1", "online", NOW).to_payload()],
    "pick-command": [PickCommand("O-1", "pork", 5.0, "kg").to_payload()],
    "pick-answer": [PickAnswer("O-1", "pork", 5.0, 4.0, "kg", NOW, "short").to_payload()],
    "alert": [Alert("a-1", "stale", "warning", "no reading", NOW, site_id="s1").to_payload()],
    "mode-event": [ModeEvent("m-1", "declare", "wuhan", NOW, "user:alice", "outbreak", ("c1",), 10, 60.0, "wuhan")
                   .to_payload(), ModeEvent("m-2", "end", "wuhan", NOW, "user:alice", "over").to_payload()],
    "mode-error": [ModeError("bad", NOW, "{}").to_payload()],
    "demand-update": [DemandUpdate("u-1", "wuhan", "RC-1", "pork", 2, 10.0, NOW).to_payload()],
    "dispatch-record": [order(True).to_payload(), order(False).to_payload(),
                        CancelRecord("O-1", "E-1", "DC1", "superseded", NOW, "P-2").to_payload()],
    "order-status": [OrderStatus("O-1", "delivered", NOW, 5.0, extra={"vehicle": "truck 7"}).to_payload()],
    "order-status-error": [StatusError("refused", NOW, "{}", order_id="O-1").to_payload()],
    "plan-summary": [PlanSummary("P-1", "E-1", "r", 1, NOW, "optimal", 1.0, 1.0, 0.0, 0.2,
                                 materials={"pork": {"unit": "kg"}}).to_payload()],
    "audit-record": [AuditRecord("A-1", "s1", "inspector", NOW, (AuditCount("pork", 3.0, "kg"),)).to_payload()],
}


def test_committed_schemas_and_asyncapi_match_the_models():
    assert differences(DOCS) == [], "run `vreserve schemas export` and commit docs/schemas and docs/asyncapi.yaml"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_records_the_code_writes_validate_against_their_schema(name):
    validator = schema(name)
    for payload in SAMPLES[name]:
        errors = [e.message for e in validator.iter_errors(payload)]
        assert not errors, (name, errors)


def test_schemas_refuse_what_the_contracts_refuse():
    assert not schema("demand-update").is_valid({**SAMPLES["demand-update"][0], "qtyy": 1})  # refuse rule
    assert schema("order-status").is_valid({**SAMPLES["order-status"][0], "eta": 12})        # keep rule
    assert not schema("stock-report").is_valid({**SAMPLES["stock-report"][0], "v": 2})
    v2 = SAMPLES["dispatch-record"][0]
    assert not schema("dispatch-record").is_valid({k: v for k, v in v2.items() if k != "pick_window"})
    assert not schema("dispatch-record").is_valid({**v2, "material_details": {**v2["material_details"],
                                                                               "handling": "warm"}})


def test_asyncapi_names_every_kafka_topic_and_mqtt_payload():
    doc = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert set(topics.ALL) <= addresses
    assert {topics.MQTT_STOCK, topics.MQTT_STATUS, topics.MQTT_PICK, topics.MQTT_PICKED} <= addresses
    for message in doc["components"]["messages"].values():
        assert (DOCS / message["payload"]["$ref"]).exists()
