"""The admin reporting API: cases, their reports, actions on them, and the audit log.

- queries.py: the requests (query strings, action bodies) and the views
- cases.py: listing cases, one case with its reports, its audio evidence
- actions.py: an action on a case (one transaction, then its live effects)
- audit.py: the audit log
"""

from __future__ import annotations

from chalicelib.admin.actions import act
from chalicelib.admin.audit import list_audit
from chalicelib.admin.cases import case_detail, case_evidence, list_cases
from chalicelib.admin.queries import AuditQuery, CaseAction, CasesQuery, ReportsQuery

__all__ = [
    "AuditQuery",
    "CaseAction",
    "CasesQuery",
    "ReportsQuery",
    "act",
    "case_detail",
    "case_evidence",
    "list_audit",
    "list_cases",
]
