"""Training on downloaded shards (``kgcurate train``): pure pieces (lake input, the text draw, the trainer's
argument list, the experiment folder) and, in :mod:`kgcurate.train.launch`, the one module that imports
torch and open_clip."""
