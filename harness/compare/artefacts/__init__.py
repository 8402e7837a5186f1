"""The artefacts wing: models that only run end to end (a SavedModel, a ``.tflite`` file), judged chained against the
reference with the same report.  :mod:`.pairing` pairs an artefact's tensors with Caffe records and judges them; one
module per artefact kind (:mod:`.saved_model`, :mod:`.tflite`) loads and runs it."""
