"""Annotation: labels on images, with their author and provenance; the training data."""
