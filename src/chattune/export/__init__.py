"""Ship a fine-tune: merged safetensors, GGUF for llama.cpp, an Ollama Modelfile, and a model card.

chattune export runs/quickstart --format gguf --quant f16 --quant q8_0
"""
