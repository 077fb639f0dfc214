"""Inspection: projects, lines, stations, parts, their images, model runs and verdicts."""
