"""LLM/VLM backends, request cache, serving and the captioning stage."""
