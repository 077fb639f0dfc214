"""Routing statistics, free of Django: calibrate auto-pass / auto-fail thresholds so that the
escape rate and the false-reject rate stay under their targets with a stated confidence."""
