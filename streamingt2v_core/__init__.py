"""StreamingT2V core library: plain PyTorch, never imports ComfyUI."""
