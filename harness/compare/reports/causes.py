"""The public cause codes and what each means (the JSON report carries the code)."""

from __future__ import annotations


CAUSES: dict[str, str] = {
    "kernel_reshaped": "Caffe OIHW conv weights reshaped to Keras HWIO instead of transposed",
    "kernel_flipped": "kernel rotated 180 degrees (convolution vs cross-correlation)",
    "kernel_axes_swapped": "kernel H and W axes swapped",
    "channel_order": "input channels reversed (BGR vs RGB)",
    "input_layout": "NCHW data fed as NHWC (reshaped instead of transposed), or the reverse",
    "same_padding": "TensorFlow padding='same' instead of Caffe's symmetric padding",
    "padding_offset": "padding placed on the wrong side or of the wrong amount",
    "stride": "convolution stride differs from the prototxt's (e.g. a ResNet v1.5 port moving the stride from the "
              "1x1 to the 3x3 convolution)",
    "dilation": "convolution dilation differs from the prototxt's",
    "kernel_size": "convolution kernel size differs from the prototxt's",
    "num_output": "convolution output count (filters) differs from the prototxt's num_output",
    "pool_rounding": "pooling output size rounded down (floor) where Caffe rounds up (ceil), or the reverse",
    "pool_pad_value": "MAX pooling padded with zeros instead of -inf",
    "pool_avg_divisor": "AVE pooling divides by the wrong count (TF excludes padding, Caffe counts it)",
    "flatten_order": "InnerProduct weights expect C,H,W order but the Keras Flatten gives H,W,C",
    "dense_reshaped": "InnerProduct weights reshaped to (K, N) instead of transposed",
    "dense_not_transposed": "InnerProduct weights (N, K) used as the Keras kernel without transposing",
    "bn_scale_factor": "BatchNorm moving-average factor blob (blobs[2]) ignored",
    "bn_epsilon": "BatchNorm epsilon differs (Keras default 1e-3, Caffe default 1e-5)",
    "lrn_alpha_scaling": "LRN alpha not divided by local_size (Caffe uses alpha / n)",
    "lrn_k": "LRN k (bias) dropped or changed",
    "lrn_size": "LRN depth_radius set to local_size instead of (local_size - 1) / 2",
    "relu_slope": "ReLU negative slope missing or wrong",
    "activation_clipped": "the Keras activation clips (ReLU6, ReLU(max_value=...)) where Caffe's does not, or the "
                          "reverse",
    "missing_bias": "bias not loaded",
    "group_order": "grouped convolution's channel groups concatenated or fed in the wrong order",
    "deconv_kernel_layout": "Deconvolution weights (C_in, C_out, kh, kw) read with the channel axes exchanged",
    "bn_batch_stats": "BatchNorm normalised with batch statistics (training mode) instead of the stored ones, or "
                      "the reverse (Caffe's use_global_stats: false)",
    "bn_scale_split": "one BatchNormalization stands for BatchNorm + Scale but computes only one of them (the "
                      "Scale's gamma/beta or the BatchNorm's statistics never loaded)",
    "bn_weight_order": "BatchNormalization weights set in the wrong order (Keras: gamma, beta, mean, variance)",
    "dropout_active": "Dropout applied at inference (training mode)",
    "input_preprocessing": "input scale or mean subtraction applied on one side only",
    "reduced_precision": "float16 / bfloat16 / TF32 arithmetic",
    "concat_order": "Concatenate given the branches in another order than the Caffe Concat's bottoms",
    "missing_layer": "a Caffe layer that computes a net output has no Keras counterpart (e.g. the final Softmax "
                     "left out)",
    "extra_layer": "the Keras model output passes through a layer Caffe does not have (e.g. a second Softmax)",
    "weights_not_given": "no Caffe weights given: the Caffe side runs on seeded random weights that the Keras "
                         "model's trained weights are not",
    # layer 0 of check --images: Caffe's preprocessing vs the Keras side's (harness.compare.diagnose.preprocessing)
    "preprocess_channel_order": "layer 0: the Keras side feeds RGB where Caffe's OpenCV reads BGR (or swaps the "
                                "channels where pycaffe's channel_swap does not, or twice)",
    "preprocess_mean_order": "layer 0: the per-channel mean subtracted in the wrong channel order (R, G, B values on "
                             "B, G, R data)",
    "preprocess_scale_order": "layer 0: the scale applied at another point than Caffe's: the pixels and the mean "
                              "scaled by different factors (the mean subtracted after the scaling instead of "
                              "before, raw_scale vs input_scale, [0, 1] vs [0, 255])",
    "preprocess_scale_value": "layer 0: Caffe's order (the mean subtracted first) with another scale factor: the "
                              "whole layer 0 a constant times Caffe's (a missing or other transform_param.scale / "
                              "input_scale such as a hidden 0.017, 1/255 for 1/256, the std given as a variance)",
    "preprocess_mean_image": "layer 0: the mean image's per-channel mean (a mean pixel) subtracted where Caffe "
                             "subtracts the mean image (mean_file)",
    "preprocess_mean_value": "layer 0: another per-channel mean than Caffe's mean_value, or none (e.g. "
                             "keras.applications' mode 'caffe' (103.939, 116.779, 123.68) on a net trained with "
                             "mean_value (104, 117, 123))",
    "preprocess_crop": "layer 0: a crop other than Caffe's TEST centre crop (top-left, rounded offset, none, or a "
                       "resize instead of the crop)",
    "preprocess_resize": "layer 0: a resize other than Caffe's (ImageData new_height/new_width, OpenCV INTER_LINEAR "
                         "on 8 bits): another interpolation, another size, or none",
    "unknown": "no tested explanation fits",
}
