from annotation.models.annotations import Annotation
from annotation.models.labelling import Label, LabelRevision, LabelSkip, LabelTask

__all__ = ["Annotation", "Label", "LabelRevision", "LabelSkip", "LabelTask"]
