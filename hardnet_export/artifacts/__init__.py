"""What artifacts *are*, torch-free: the floor every stage may import and that imports none.

- :mod:`~hardnet_export.artifacts.metadata`: an ONNX graph's provenance as a typed record.
- :mod:`~hardnet_export.artifacts.quantisation`: a quantised graph's calibration, settings and
  accuracy gates (keyed by backend) as one record in that metadata.
- :mod:`~hardnet_export.artifacts.sidecar`: a TensorRT engine's JSON sidecar, one writer and
  one reader.
- :mod:`~hardnet_export.artifacts.variants`: the table of exported variants.
- :mod:`~hardnet_export.artifacts.describe`: the describe-function protocol and batching.
"""
