"""Model and dataset loading: local Hugging Face folders, ONNX files and the built-in demo."""
