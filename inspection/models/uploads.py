"""Resumable uploads: a station sends a large image in chunks and resumes after a cut."""

from __future__ import annotations

import uuid

from django.db import models

from inspection.models.projects import Station


class Upload(models.Model):
    """Bytes received so far for one image, kept outside media storage until complete.

    The partial file lives at ``<LOUPE_VAR_DIR>/uploads/<id>.part`` (a server-generated name).
    A complete upload is consumed by one inspection post and then deleted.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="uploads")
    length = models.PositiveBigIntegerField()  # bytes the station announced
    offset = models.PositiveBigIntegerField(default=0)  # bytes received and on disk
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at"]

    @property
    def is_complete(self) -> bool:
        return self.offset == self.length
