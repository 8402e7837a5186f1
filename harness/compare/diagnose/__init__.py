"""Why does a Keras layer disagree with Caffe?  Candidate explanations tested against the data.

One module per hypothesis family (:mod:`.conv`, :mod:`.pooling`, :mod:`.affine`, :mod:`.norm`, :mod:`.activation`,
:mod:`.shape`, :mod:`.preprocess`, :mod:`.precision`), each registering its hypotheses for the Caffe types it knows
(:data:`._common.HYPOTHESES`); one engine (:mod:`.engine`) tries them; :mod:`.shapes` diagnoses from shapes alone.

:func:`diagnose` takes one Caffe layer, the reference's inputs and output for it, and what the Keras side produced
from the same inputs in isolation.  It re-runs the Caffe layer through the NumPy reference
(:data:`harness.reference.registry.REFERENCE`) under each *classic porting bug* -- weights transformed the way a
wrong port transforms them, inputs permuted the way a wrong port reads them, padding placed the way TensorFlow places
it, arithmetic rounded the way reduced-precision hardware rounds it -- and keeps the hypotheses whose prediction
reproduces the Keras output.  Confidence measures how much of the observed error a hypothesis explains and how
closely it reproduces the Keras output::

    confidence = max(0, 1 - e_h / e_0) / (1 + e_h / 0.01)

where ``e_0 = ||keras - reference|| / ||reference||`` and ``e_h = ||keras - prediction_h|| / ||prediction_h||``.
An exact reproduction (``e_h`` at float32 rounding level) scores about 0.99+; a hypothesis that changes nothing
scores 0.  :func:`diagnose_shape` does the same from shapes alone when the Keras output cannot even be compared.

Cause codes (stable, public; they appear in the JSON report):

==========================  =========================================================================================
code                        detected by
==========================  =========================================================================================
``kernel_reshaped``         conv re-run with ``W' = W.reshape(kh, kw, ci, co).transpose(3, 2, 0, 1)`` (the Keras kernel
                            was ``W.reshape(kh, kw, ci, co)`` instead of ``W.transpose(2, 3, 1, 0)``); depthwise: the
                            kernel was ``W.reshape(kh, kw, C, m)`` instead of ``W.reshape(C, m, kh, kw).transpose(2, 3,
                            0, 1)``
``kernel_flipped``          conv/deconv re-run with the kernel rotated 180 degrees (``W[:, :, ::-1, ::-1]``)
``kernel_axes_swapped``     conv re-run with the kernel's H and W axes swapped (``W.transpose(0, 1, 3, 2)``)
``channel_order``           conv/inner-product re-run with the input channels reversed (BGR vs RGB); PReLU with its
                            slopes reversed
``input_layout``            re-run with the NCHW input read as an NHWC buffer (``x.reshape(N, H, W, C)``) or the
                            reverse; from shapes: the Keras shape is a permutation of Caffe's
``same_padding``            conv/pool/deconv re-run with TensorFlow's ``padding="same"`` placement
                            (``before = total // 2``); from shapes: Keras size = ``ceil(in / stride)``
``padding_offset``          conv/pool re-run with other asymmetric paddings of the right output size; deconv output
                            cropped at other offsets; from shapes: the size of no padding; weakly, an error on the
                            borders only
``stride``                  conv re-run with the Keras Conv2D's ``strides`` (shapes differ): it gives the Keras output's
                            shape (0.8) and values (0.97); the fix names the layer's ``strides=``
``dilation``                conv re-run with the Keras Conv2D's ``dilation_rate``, as ``stride``
``kernel_size``             shapes: conv re-run with the Keras ``kernel_size`` (zero weights of that size) gives the
                            Keras output's shape (0.8)
``num_output``              shapes: conv re-run with the Keras ``filters`` as num_output gives the Keras shape (0.8)
``pool_rounding``           shapes: the Keras size equals Caffe's formula with floor instead of ceil (or the reverse)
``pool_pad_value``          MAX pool re-run with zero padding (``ZeroPadding2D``) instead of ``-inf``; weakly, a MAX
                            pool error on negative inputs only
``pool_avg_divisor``        AVE pool re-run with TF's divisor (padding excluded) or a full ``k*k`` divisor
``flatten_order``           inner product / Flatten re-run on the input flattened in H, W, C order
``dense_reshaped``          inner product re-run with ``W' = W.reshape(K, N).T`` (Keras kernel ``W.reshape(K, N)``)
``dense_not_transposed``    inner product re-run with ``W' = W.T`` (Keras kernel ``W`` itself; square weights only)
``bn_scale_factor``         BatchNorm re-run with the moving-average factor blob taken as 1
``bn_epsilon``              BatchNorm re-run with Keras's epsilon (the Keras layer's, else 1e-3) instead of Caffe's
``lrn_alpha_scaling``       LRN re-run with ``alpha * n`` (Keras/TF ``alpha`` is Caffe's ``alpha / n``)
``lrn_k``                   LRN re-run with ``k = 1`` (TF's default bias) instead of Caffe's ``k``
``lrn_size``                LRN re-run with ``local_size = 2 n + 1`` (``depth_radius = n`` instead of ``(n - 1) / 2``)
``relu_slope``              ReLU re-run with the Keras layer's slope, slope 0, or the slope measured on negative
                            inputs; PReLU with its slopes zero or shared; weakly, an error on negative inputs only
``activation_clipped``      ReLU re-run clipped at the Keras activation's ``max_value`` (6 for ReLU6 / relu6, or the value
                            the Keras output saturates at); ReLU6 re-run without the clip
``missing_bias``            conv/deconv/inner product/Scale re-run with the bias set to zero
``group_order``             grouped conv re-run with the output (or input) channel groups in reverse order
``deconv_kernel_layout``    deconv re-run with the kernel's two channel axes exchanged (``W.transpose(1, 0, 2, 3)``)
``bn_batch_stats``          BatchNorm re-run with the batch's own statistics (Keras in training mode, Caffe TRAIN
                            phase), or, for Caffe's ``use_global_stats: false``, with the stored ones
``bn_scale_split``          BatchNorm + Scale re-run as the BatchNorm alone (the Scale's gamma/beta never loaded into
                            the BatchNormalization) or as the Scale alone (the statistics never loaded)
``bn_weight_order``         BatchNorm(+Scale) recomputed with gamma, beta, mean, variance handed to Keras in another
                            order
``dropout_active``          Dropout output zeroed at about ``dropout_ratio`` of the elements and the rest scaled by
                            ``1 / (1 - ratio)``: dropout ran in training mode
``input_preprocessing``     first (affine) layer re-run on ``x * s`` or ``x - m`` with the scale ``s`` and per-channel
                            mean ``m`` estimated by least squares from the Keras output (a Rescaling/Normalization
                            layer or mean values applied on one side only)
``reduced_precision``       error of the size float16 / bfloat16 / TF32 arithmetic produces (re-run with inputs and
                            weights rounded to that format) and spread evenly: not on borders, one channel or sign
``concat_order``            Concat re-run with its bottoms in every other order (up to 5 bottoms)
``missing_layer``           not a hypothesis: set by :func:`harness.compare.compare` when no pair fails but a Caffe net
                            output's last computing layer has no Keras counterpart (the final Softmax left out), or
                            when the Caffe net re-run without an unmatched layer right before the first divergent
                            pair reproduces its Keras output (an LRN or ReLU left out; that layer is then named)
``extra_layer``             Caffe output re-run through the activation fused into the Keras layer (Conv2D(...,
                            activation="relu") where Caffe has no ReLU); also set by :func:`harness.compare.compare`
                            when a Keras model output is computed by a layer no Caffe layer matched (a second
                            Softmax after Dense(softmax)), or when the Caffe layer run on the output of an unmatched
                            Keras layer just before it reproduces the Keras output (a stray ReLU layer)
``weights_not_given``       not a hypothesis: set by :func:`harness.compare.compare` when no Caffe weights were given
                            (seeded random ones are used) and none of the Keras model's weighted layers holds them;
                            it replaces the diagnosis (a trained port checked without ``--weights``)
``unknown``                 nothing above fits; the explanation lists where the error sits (borders, one channel,
                            negative inputs, a constant ratio, a shape off by one)
==========================  =========================================================================================

Layer-0 codes (``check --images``: Caffe's preprocessing against the Keras side's, :mod:`.layer0`; each hypothesis
re-runs Caffe's own preprocessing on the same decoded images with one rule changed):

* ``preprocess_channel_order`` -- re-run on the image with its channels reversed (the Keras side keeps RGB where
  Caffe reads BGR);
* ``preprocess_mean_order`` -- re-run with the mean values (or the mean image's channels) in the reverse order;
* ``preprocess_scale_order`` -- ``keras = a*x + b*mean`` fitted by least squares over the cropped pixels ``x`` and
  Caffe's mean; explains it when the fit is exact and the pixels and the mean are scaled by different factors (the
  scale before the mean, raw_scale vs input_scale, [0, 1] vs [0, 255]);
* ``preprocess_scale_value`` -- the same fit with one factor on both (``a/a0 == b/b0 != 1``, or another pixel factor
  with no mean): Caffe's order with another scale (a missing or hidden 0.017, 1/255 for 1/256);
* ``preprocess_mean_image`` -- re-run with the mean image replaced by its per-channel mean (the mean pixel), or
  cropped at the top-left while the image is centre-cropped;
* ``preprocess_mean_value`` -- Caffe's scale with another per-channel mean fitted (keras.applications' 'caffe'
  mean on a (104, 117, 123) net, or none); the reversed mean is left to ``preprocess_mean_order``;
* ``preprocess_crop`` -- re-run cropping at the top-left, the bottom-right or the rounded-up centre, or resizing the
  whole image to the crop; and, by shape, a Keras side that does not crop;
* ``preprocess_resize`` -- re-run with ImageData's resize done by another interpolation (OpenCV nearest, cubic,
  area, Lanczos; Keras nearest, bicubic, bilinear in float) or not at all, or to the Keras side's own
  ``--keras-resize`` size.

Hypotheses are tried most likely first and the search stops at the first exact reproduction, or when
``context["time_budget_s"]`` (default 60 s) is spent; expensive layers are tested on their first sample only.

``context`` may carry ``{"chain": [Layer, ...]}``: Caffe layers after ``layer`` whose effect the Keras output also
contains (an activation fused into ``Conv2D``, a Scale folded into ``BatchNormalization``).  Hypotheses are then
tried on every layer of the span and the rest of the span is run by the reference, so ``ref_output`` is the output of
the last layer of the chain.
"""

from __future__ import annotations

from ..reports.result import Cause
from ..reports.causes import CAUSES
from .engine import diagnose
from .shape_mismatch import diagnose_shape

__all__ = ["CAUSES", "Cause", "diagnose", "diagnose_shape"]
