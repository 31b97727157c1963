"""Supervision of the crowd reserve: what makes owners join and keeps their numbers honest.

- contracts: priced, dated commitments per site and material, loaded from a file;
- settlement: after an emergency, what each owner is owed (call-off payments, standby fees) minus
  penalties, as versioned statements whose later versions are marked adjustments;
- assessment: fulfilment, response time and data reliability per site and owner kind, ranked, charted;
- audits and trust: risk-weighted spot checks, counted vs reported stock, discrepancy alerts, trust
  scores the planner multiplies stock by, suspension below a threshold;
- grid: per grid cell, contracted vs reported vs audited stock and open alerts.

Pure logic lives in the modules named after the domain; SQL lives in the ``sql_*`` adapters and
Kafka in ``audit_topic``.
"""
