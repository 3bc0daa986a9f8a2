"""Export of models to ONNX, with an onnxruntime agreement check."""

from .onnx import cached_onnx, check_onnx, export_onnx

__all__ = ["cached_onnx", "check_onnx", "export_onnx"]
