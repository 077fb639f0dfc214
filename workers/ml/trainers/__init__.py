"""Learning code of the three kinds; ``workers.ml.training.train`` is the public entry.

Each ``train_*`` returns a ``TrainedModel``: the fitted network plus what the manifest
needs (class names, thresholds, metrics).
"""

from workers.ml.trainers.anomaly import greedy_coreset, train_anomaly
from workers.ml.trainers.classifier import train_classifier
from workers.ml.trainers.common import TrainedModel
from workers.ml.trainers.segmenter import train_segmenter

__all__ = ["TrainedModel", "greedy_coreset", "train_anomaly", "train_classifier", "train_segmenter"]
