"""The example application: proves the dependencies import inside the image."""
import openvino
import torch
import transformers

print(f"torch {torch.__version__}, transformers {transformers.__version__}, openvino {openvino.__version__}")
