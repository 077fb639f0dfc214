"""Writes (services), split by aggregate. Import from here: ``from inspection.services import ...``."""

from inspection.services.inspections import SubmitResult, inspection_submit
from inspection.services.model_runs import inspection_run
from inspection.services.projects import (
    UNCHANGED,
    defect_class_create,
    defect_class_update,
    membership_change_role,
    membership_set,
    project_create,
    project_update,
    station_create,
    station_set_region,
    station_token_issue,
    station_token_revoke,
)
from inspection.services.uploads import (
    inspection_submit_upload,
    upload_append,
    upload_create,
    upload_discard,
    upload_path,
    uploads_purge_expired,
)
from inspection.services.verdicts import verdict_record_final

__all__ = [
    "UNCHANGED",
    "SubmitResult",
    "defect_class_create",
    "defect_class_update",
    "inspection_run",
    "inspection_submit",
    "inspection_submit_upload",
    "membership_change_role",
    "membership_set",
    "project_create",
    "project_update",
    "station_create",
    "station_set_region",
    "station_token_issue",
    "station_token_revoke",
    "upload_append",
    "upload_create",
    "upload_discard",
    "upload_path",
    "uploads_purge_expired",
    "verdict_record_final",
]
