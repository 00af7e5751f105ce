"""Export: PyTorch -> ONNX (FP32, FP16) and ONNX -> TensorRT engines."""
