"""The engine wing: one comparison of a Keras model with the Caffe reference.  In the order a comparison runs them:
:mod:`.inputs` (the Caffe net, the inputs both sides get), :mod:`.loading` (the Keras model: safe mode, nested models,
layouts), :mod:`.match` (Caffe records to Keras outputs), :mod:`.passes` (the reference forward and the two Keras runs,
evaluated by :mod:`.evaluation`), :mod:`.tolerance` (derived float32 bounds), :mod:`.judge`, :mod:`.evidence`
(parameter evidence), :mod:`.divergence` (the first divergent layer), :mod:`.diagnosis` (asking :mod:`..diagnose` why)
and :mod:`.comparison` (``compare()``, which orders them).  Imports only the reports and diagnose wings below it."""
