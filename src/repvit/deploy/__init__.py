"""Deployment: export to ONNX, TorchScript and Core ML, INT8 quantization, parity checks."""
