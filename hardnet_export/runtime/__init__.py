"""Runtime: one descriptor API over PyTorch, ONNX Runtime and TensorRT artifacts."""
