"""Loupe's ML engine: training, ONNX export and inference for visual defect inspection.

Never imports Django. The Django side hands it paths and arrays and gets plain
dataclasses back:

- ``workers.ml.types``: ``Sample``, ``Prediction``, ``Progress``, ``TrainResult``
  (numpy only; cheap to import in the web process)
- ``workers.ml.hyperparameters``: each kind's defaults and ``resolve_hyperparameters`` (no torch)
- ``workers.ml.regions``: inspection regions (parse, crop, paste maps back; numpy only)
- ``workers.ml.training.train``: samples -> verified artifact directory
- ``workers.ml.inference.load_inferencer``: artifact directory + stored sha256 -> ``Inferencer``
- ``workers.ml.errors``: ``ArtifactIntegrityError``, ``UnsafeArtifactError``, ``TrainingCancelled``

This ``__init__`` deliberately imports nothing, so importing the types does not pull in
torch or ONNX Runtime.
"""
