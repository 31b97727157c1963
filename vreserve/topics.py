"""Every Kafka topic and MQTT topic the project uses, by logical name.

Kafka names get the settings' prefix (``Settings.topic``); MQTT topics are the versioned contract
with the sites' sensors and are documented in the README.
"""
from __future__ import annotations

#: Validated stock reading batches, one record per MQTT message, keyed by site id.
READINGS = "readings"
#: Anything the bridge could not accept: original bytes, MQTT topic, reason, time.
READINGS_DEAD_LETTER = "readings.dead-letter"
#: Records that reached the readings topic but the stream worker could not use (schema drift).
STREAM_DEAD_LETTER = "stream.dead-letter"
#: Stale sites, low stock per grid cell, suspicious jumps; keyed by site or grid cell.
ALERTS = "alerts"
#: normal/emergency conversion events, keyed by region.
MODE = "mode"
#: Errors about mode events that changed nothing (unknown region, malformed, end without declare).
MODE_ERRORS = "mode.errors"
#: Demand updates published by rescue centres, keyed by rescue centre.
DEMAND = "demand"
#: Dispatch orders (and cancel records), keyed by destination.
DISPATCH_ORDERS = "dispatch-orders"
#: Order status from logistics: accepted, in_transit, delivered, failed; keyed by order id.
ORDER_STATUS = "order-status"
#: Order statuses the dispatcher refused, with the reason (unknown order, malformed, over-delivery,
#: a status after a final one, a carrier's cancel of an order the dispatcher never cancelled),
#: keyed by order id, so the carrier can see what was refused and why.
ORDER_STATUS_ERRORS = "order-status.errors"
#: One summary per plan (per region and period), keyed by region.
PLANS = "plans"
#: Counted quantities submitted by auditors, keyed by site id.
AUDITS = "audits"
#: Dispatch records the (simulated) logistics system could not use, as ``DeadLetter`` records.
LOGISTICS_DEAD_LETTER = "logistics.dead-letter"

ALL = (
    READINGS,
    READINGS_DEAD_LETTER,
    STREAM_DEAD_LETTER,
    ALERTS,
    MODE,
    MODE_ERRORS,
    DEMAND,
    DISPATCH_ORDERS,
    ORDER_STATUS,
    ORDER_STATUS_ERRORS,
    PLANS,
    AUDITS,
    LOGISTICS_DEAD_LETTER,
)

# MQTT (contract v1 with site sensors)
MQTT_STOCK = "vr/v1/sites/{site_id}/stock"
MQTT_STATUS = "vr/v1/sites/{site_id}/status"
#: Pick commands to a site (the logistics system took goods away): {"v":1,"order_id","material","qty","unit"}.
MQTT_PICK = "vr/v1/sites/{site_id}/commands/pick"
#: A site's answer to a pick command: what it really handed over.
#: {"v":1,"order_id","material","requested","picked","unit","ts"}; picked < requested is a short pick.
MQTT_PICKED = "vr/v1/sites/{site_id}/picked"
#: Shared subscription so several bridges split the load.
MQTT_STOCK_SHARED = "$share/vr-bridge/vr/v1/sites/+/stock"


def mqtt_stock_topic(site_id: str) -> str:
    return MQTT_STOCK.format(site_id=site_id)


def mqtt_pick_topic(site_id: str) -> str:
    return MQTT_PICK.format(site_id=site_id)


def mqtt_picked_topic(site_id: str) -> str:
    return MQTT_PICKED.format(site_id=site_id)


def mqtt_status_topic(site_id: str) -> str:
    return MQTT_STATUS.format(site_id=site_id)
