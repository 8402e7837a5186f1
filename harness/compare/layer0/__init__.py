"""The layer-0 wing (``check --images``): Caffe's preprocessing against the Keras side's on the same image files
(:mod:`.preprocessing`).  Imports the engine, diagnose and reports wings below it."""
