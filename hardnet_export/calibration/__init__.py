"""Calibration: real-patch calibration sets (:mod:`~hardnet_export.calibration.dataset`) and
the INT8 accuracy gate (:mod:`~hardnet_export.calibration.gate`).

The quantiser itself is an export step (:mod:`hardnet_export.export.int8`), which uses both.
Imports: the data layer, evaluation metrics and the artifacts floor.
"""
