"""JSON Schema of every Kafka record and MQTT payload and of the files the project reads (a
scenario), and the AsyncAPI 3 document of the topics, generated from the models (``vreserve schemas export``; ``vreserve schemas check`` fails
when the committed files in ``docs/`` differ from what the models say).

The schemas describe the payload on the wire: ``v`` is a constant, kept extras (the ``keep`` rule)
are ``additionalProperties``, a record that refuses unknown fields says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from pydantic import BaseModel

from vreserve import topics
from vreserve.scenario import ScenarioFile
from vreserve.schemas.alerts import Alert
from vreserve.schemas.audits import AuditRecord
from vreserve.schemas.common import MAX_EXTRA_FIELDS, Record, adapter
from vreserve.schemas.dispatch import (ORDER_VERSION, CancelRecord, CarrierDetails, DemandUpdate, DispatchOrder,
                                       ModeError, ModeEvent, OrderStatus, PlanSummary, StatusError)
from vreserve.schemas.readings import DeadLetter, StockReport
from vreserve.schemas.site_commands import PickAnswer, PickCommand, SiteStatus

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "https://vreserve.example/schemas/"


# ----------------------------------------------------------------------------- schemas
def record_schema(cls: type[Record]) -> dict:
    """The wire schema of a record: its fields, ``v`` const, its unknown-field rule."""
    schema = adapter(cls).json_schema()
    _wire_rule(schema, cls.UNKNOWN)
    schema["properties"] = {"v": {"const": cls.VERSION, "description": "contract version"}, **schema["properties"]}
    schema["required"] = ["v", *schema.get("required", [])]
    for part in schema.get("$defs", {}).values():
        if "extra" in part.get("properties", {}):
            _wire_rule(part, "keep")
    return schema


def _wire_rule(schema: dict, rule: str) -> None:
    schema.get("properties", {}).pop("extra", None)
    if rule == "refuse":
        schema["additionalProperties"] = False
    elif rule == "keep":
        schema["additionalProperties"] = {"description": f"kept as it came; at most {MAX_EXTRA_FIELDS} unknown "
                                                         "fields, names up to 64 characters"}


def _with_kind(schema: dict, kind: str) -> dict:
    schema["properties"] = {"v": schema["properties"].pop("v"), "kind": {"const": kind}, **schema["properties"]}
    schema["required"] = ["v", "kind", *[r for r in schema["required"] if r != "v"]]
    return schema


def dispatch_order_schema() -> dict:
    """An order: v2 (with what a carrier needs) or v1 (orders stored before v2)."""
    v1 = _with_kind(record_schema(DispatchOrder), "order")
    v1["properties"].pop("details")
    v1["title"] = "DispatchOrder v1"
    details = adapter(CarrierDetails).json_schema()
    v2 = json.loads(json.dumps(v1))
    v2["title"] = "DispatchOrder v2"
    v2["properties"]["v"] = {"const": ORDER_VERSION, "description": "contract version"}
    v2["properties"].update(details["properties"])
    v2["required"] = v1["required"] + [r for r in details["required"]]
    v2.setdefault("$defs", {}).update(details.get("$defs", {}))
    defs = v2.pop("$defs")
    return {"title": "DispatchOrder", "description": DispatchOrder.__doc__.strip(), "oneOf": [v2, v1], "$defs": defs}


def dispatch_record_schema() -> dict:
    """A record of the dispatch-orders topic: an order or a cancel."""
    order = dispatch_order_schema()
    cancel = _with_kind(record_schema(CancelRecord), "cancel")
    return {"title": "Dispatch record", "oneOf": [*order["oneOf"], cancel], "$defs": order["$defs"]}


def readings_record_schema() -> dict:
    """The readings topic's record: the stock report plus the bridge's two fields."""
    schema = record_schema(StockReport)
    schema["title"] = "ReadingBatch"
    schema["description"] = "An accepted stock report as the bridge forwards it to Kafka."
    schema["properties"]["received_at"] = {"type": "string", "format": "date-time",
                                           "description": "when the bridge received it (UTC)"}
    schema["properties"]["mqtt_topic"] = {"type": "string", "description": "the MQTT topic it came on"}
    schema["required"] += ["received_at", "mqtt_topic"]
    return schema


def dead_letter_schema() -> dict:
    schema = record_schema(DeadLetter)
    schema["properties"].pop("payload")
    schema["properties"]["payload_b64"] = {"type": "string", "contentEncoding": "base64",
                                           "description": "the refused record's original bytes"}
    schema["required"] = [("payload_b64" if r == "payload" else r) for r in schema["required"]]
    return schema


@dataclass(frozen=True)
class Contract:
    """One published contract: a schema file and where it travels."""

    name: str                       # file stem in docs/schemas/
    schema: Callable[[], dict]
    channel: str                    # Kafka topic (logical name) or MQTT topic filter
    transport: str                  # kafka | mqtt
    key: str                        # Kafka key, or the MQTT QoS / retain rule
    sender: str                     # who produces it
    summary: str


def _plain(cls: type[Record]) -> Callable[[], dict]:
    return lambda: record_schema(cls)


CONTRACTS: tuple[Contract, ...] = (
    Contract("stock-report", _plain(StockReport), topics.MQTT_STOCK, "mqtt", "QoS 1, not retained", "site",
             "A site's stock at one instant"),
    Contract("site-status", _plain(SiteStatus), topics.MQTT_STATUS, "mqtt", "QoS 1, retained", "site",
             "A site's connection state"),
    Contract("pick-command", _plain(PickCommand), topics.MQTT_PICK, "mqtt", "QoS 1", "logistics",
             "Hand goods over for an order"),
    Contract("pick-answer", _plain(PickAnswer), topics.MQTT_PICKED, "mqtt", "QoS 1", "site",
             "What the site really handed over"),
    Contract("readings", readings_record_schema, topics.READINGS, "kafka", "site id", "ingest bridge",
             "Accepted stock reports"),
    Contract("dead-letter", dead_letter_schema, topics.READINGS_DEAD_LETTER, "kafka", "site id (when known)",
             "ingest bridge", "Refused stock reports with the reason"),
    Contract("dead-letter", dead_letter_schema, topics.STREAM_DEAD_LETTER, "kafka", "site id (when known)",
             "stream worker", "Readings records the stream worker could not use"),
    Contract("dead-letter", dead_letter_schema, topics.LOGISTICS_DEAD_LETTER, "kafka", "the record's key",
             "logistics simulator", "Dispatch records the logistics simulator could not use"),
    Contract("alert", _plain(Alert), topics.ALERTS, "kafka", "site id, else grid cell", "stream worker, supervision",
             "Alerts as raised and as resolved"),
    Contract("mode-event", _plain(ModeEvent), topics.MODE, "kafka", "region", "API (operators)",
             "Declare or end an emergency"),
    Contract("mode-error", _plain(ModeError), topics.MODE_ERRORS, "kafka", "region (or ?)", "dispatcher",
             "Mode events that changed nothing, with the reason"),
    Contract("demand-update", _plain(DemandUpdate), topics.DEMAND, "kafka", "rescue centre", "API (rescue centres)",
             "A rescue centre's new demand for a period"),
    Contract("dispatch-record", dispatch_record_schema, topics.DISPATCH_ORDERS, "kafka",
             "destination (a cancel: the cancelled order's destination)", "dispatcher",
             "Dispatch orders (v2: what a carrier needs) and cancel records"),
    Contract("order-status", _plain(OrderStatus), topics.ORDER_STATUS, "kafka", "order id", "carriers (or the API)",
             "A carrier's status of one order"),
    Contract("order-status-error", _plain(StatusError), topics.ORDER_STATUS_ERRORS, "kafka", "order id",
             "dispatcher", "Refused order statuses, with the reason"),
    Contract("plan-summary", _plain(PlanSummary), topics.PLANS, "kafka", "region", "dispatcher",
             "One plan's figures"),
    Contract("audit-record", _plain(AuditRecord), topics.AUDITS, "kafka", "site id", "auditors (CLI)",
             "Counted quantities of one site"),
)


#: Files the project reads (not records on a topic): schema file stem -> the file's model. Their
#: models refuse unknown names, and so do their schemas.
FILE_CONTRACTS: dict[str, type[BaseModel]] = {"scenario": ScenarioFile}


def schema_files() -> dict[str, dict]:
    """File name -> JSON Schema document, for every contract and every file the project reads."""
    out: dict[str, dict] = {}
    for c in CONTRACTS:
        if f"{c.name}.schema.json" in out:
            continue
        schema = c.schema()
        out[f"{c.name}.schema.json"] = {"$schema": SCHEMA_DIALECT, "$id": f"{ID_BASE}{c.name}.schema.json", **schema}
    for name, model in FILE_CONTRACTS.items():
        out[f"{name}.schema.json"] = {"$schema": SCHEMA_DIALECT, "$id": f"{ID_BASE}{name}.schema.json",
                                      **model.model_json_schema()}
    return out


# ----------------------------------------------------------------------------- AsyncAPI
def _channel_id(c: Contract) -> str:
    return c.channel.replace("/", "-").replace("{", "").replace("}", "").replace(".", "-")


def asyncapi() -> dict:
    """The AsyncAPI 3 document: one channel per topic, its message, who sends it."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for c in CONTRACTS:
        cid = _channel_id(c)
        msg = {"name": c.name, "title": c.summary, "contentType": "application/json",
               "payload": {"$ref": f"./schemas/{c.name}.schema.json"}}
        messages[c.name] = msg
        channel: dict[str, Any] = {"title": c.summary, "messages": {c.name: {"$ref": f"#/components/messages/{c.name}"}},
                                   "servers": [{"$ref": f"#/servers/{'mqtt' if c.transport == 'mqtt' else 'kafka'}"}]}
        if c.transport == "kafka":
            channel["address"] = c.channel
            channel["description"] = (f"Kafka topic `{{VR_TOPIC_PREFIX}}{c.channel}` (default prefix `vr.`), keyed by "
                                      f"{c.key}; produced by {c.sender}.")
            channel["bindings"] = {"kafka": {"topic": f"vr.{c.channel}", "bindingVersion": "0.5.0"}}
        else:
            channel["address"] = c.channel
            channel["description"] = f"MQTT topic, {c.key}; published by {c.sender}."
            channel["parameters"] = {"site_id": {"description": "the site's id in the registry"}}
            channel["bindings"] = {"mqtt": {"qos": 1, "retain": "retained" in c.key and "not" not in c.key,
                                            "bindingVersion": "0.2.0"}}
        channels[cid] = channel
        operations[f"{cid}-{c.name}"] = {
            "action": "send", "summary": f"{c.sender} sends: {c.summary}",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{c.name}"}]}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "vreserve topics", "version": "1.0.0",
                 "description": "Every Kafka record and MQTT payload of vreserve (generated by `vreserve schemas "
                                "export` from the record models; docs/contracts.md has the versioning rules)."},
        "servers": {"kafka": {"host": "127.0.0.1:19092", "protocol": "kafka",
                              "description": "the local runner's broker (VR_KAFKA_BOOTSTRAP)"},
                    "mqtt": {"host": "127.0.0.1:11883", "protocol": "secure-mqtt",
                             "description": "Mosquitto over TLS (VR_MQTT_URL); one account per site"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def rendered(docs: Path) -> dict[Path, str]:
    """Every generated file (path -> text), as ``export`` writes it."""
    out = {docs / "schemas" / name: json.dumps(schema, indent=2, sort_keys=False) + "\n"
           for name, schema in schema_files().items()}
    header = "# GENERATED by `vreserve schemas export` from vreserve/schemas/: edit the models, not this file.\n"
    out[docs / "asyncapi.yaml"] = header + yaml.safe_dump(asyncapi(), sort_keys=False, width=120)
    return out


def differences(docs: Path) -> list[str]:
    """Generated files that are missing or differ from the models (empty: all match)."""
    return [str(p) for p, text in rendered(docs).items() if not p.exists() or p.read_text() != text]
