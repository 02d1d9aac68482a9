"""Deployment: export a checkpoint to PyTorch, TorchScript, ONNX, TFLite, Core ML and TensorRT,
check parity against PyTorch, and run any exported artifact (``medclass predict``)."""
