"""Export: PyTorch -> one ONNX graph per entry of the variants table
(:data:`hardnet_export.artifacts.variants.VARIANTS`): patch graphs in
:mod:`~hardnet_export.export.onnx`, image graphs in :mod:`~hardnet_export.export.image_graph`
(what both share in :mod:`~hardnet_export.export.common`), FP16 in
:mod:`~hardnet_export.export.fp16`, INT8 Q/DQ in :mod:`~hardnet_export.export.int8` with
:mod:`~hardnet_export.export.sensitivity`, parity against PyTorch in
:mod:`~hardnet_export.export.parity`; and ONNX -> TensorRT engines
(:mod:`~hardnet_export.export.tensorrt`).

Imports point down: to calibration, evaluation, the runtime (ONNX Runtime sessions), the data,
the model and the floor; nothing below imports this package.
"""
