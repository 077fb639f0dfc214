from inspection.models.audit import AuditEvent, AuditImmutableError
from inspection.models.monitoring import DriftAlert
from inspection.models.parts import Image, Inspection, Part, Verdict
from inspection.models.projects import (
    DefectClass,
    DriftReview,
    Line,
    Membership,
    Project,
    Role,
    Station,
    StationToken,
    TrainingLabels,
)
from inspection.models.registry import Calibration, CalibrationScore, ModelVersion, Precision
from inspection.models.rollups import DefectRollup, Period, YieldRollup
from inspection.models.uploads import Upload
from inspection.models.webhooks import Webhook, WebhookDelivery

__all__ = [
    "AuditEvent",
    "AuditImmutableError",
    "Calibration",
    "CalibrationScore",
    "DefectClass",
    "DefectRollup",
    "DriftAlert",
    "DriftReview",
    "Image",
    "Inspection",
    "Line",
    "Membership",
    "ModelVersion",
    "Part",
    "Period",
    "Precision",
    "Project",
    "Role",
    "Station",
    "StationToken",
    "TrainingLabels",
    "Upload",
    "Verdict",
    "Webhook",
    "WebhookDelivery",
    "YieldRollup",
]
