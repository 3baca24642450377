"""Pure networks as jit-compilable functions over plain PyTrees of arrays."""
