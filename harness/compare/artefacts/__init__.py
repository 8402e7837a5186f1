"""The artefacts wing: models judged against the reference through one seam per kind (:mod:`.kinds`: the registry,
the shared preamble; one module per kind: :mod:`.keras_model`, :mod:`.onnx`, :mod:`.saved_model`, :mod:`.tflite`).
The kinds that only run end to end are judged chained with the same report: :mod:`.pairing` pairs an artefact's
tensors with Caffe records and judges them; :mod:`.chain` judges several artefacts as the stages of one chain."""
