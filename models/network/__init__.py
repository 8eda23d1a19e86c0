"""The micro-expression network: features (numpy), torch model (training/export), onnxruntime runner."""
