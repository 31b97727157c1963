"""Trust rules: moved to vreserve/trust.py (shared with the HTTP API's audit recording); this
module keeps the old import path."""
from vreserve.trust import CountCheck, TrustChange, TrustPolicy, apply_audit, check_count

__all__ = ["CountCheck", "TrustChange", "TrustPolicy", "apply_audit", "check_count"]
