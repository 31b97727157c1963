"""One contract-terms type: the priced, dated commitment of one site to hold one material for the
reserve. The contracts file, the registry file's defaults, the database's ``contracts`` row and
settlement all speak it, with the database's names. Money is in minor currency units (fen for CNY).
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic.dataclasses import dataclass


@dataclass(frozen=True)
class ContractTerms:
    """What the owner of ``site_id`` commits for ``material_id`` and what it is paid or charged.

    ``committed_qty`` in the material's unit; ``standby_fee_minor_per_unit_day`` per unit and day
    of the contract; ``call_off_price_minor_per_unit`` per unit delivered in an emergency;
    ``penalty_minor_per_unit`` per unit the owner fails to hand over beyond ``penalty_grace_share``
    of an order; ``late_penalty_minor_per_unit`` per unit picked later than
    ``min_response_minutes`` after the order. ``contract_id`` None: not stored yet.
    """

    contract_id: str | None
    site_id: str
    material_id: str
    committed_qty: Decimal
    valid_from: date
    valid_to: date
    standby_fee_minor_per_unit_day: Decimal = Decimal(0)
    call_off_price_minor_per_unit: int = 0
    min_response_minutes: int = 0
    penalty_minor_per_unit: int = 0
    penalty_grace_share: Decimal = Decimal(0)
    late_penalty_minor_per_unit: int = 0

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day <= self.valid_to
