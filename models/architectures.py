"""The trained autoencoders of the study: dense and convolutional.

Both end in a softmax over the 37 x 37 output pixels, so that a reconstruction sums
to one like the normalized input images (as in the public reimplementations of the
study). Both are trained with the pixel mean squared error and Adam's defaults.

The CNN follows 128C3-MP2-128C3-MP2-128C3-32N-k N-32N-12800N-128C3-US2-128C3-US2-1C3.
Its decoder ends at 40 x 40, so the 37 x 37 input is zero-padded to 40 x 40 (one pixel
before, two after, in each direction) and the 40 x 40 output is cropped back by the
same margins before the softmax: the loss compares the original 37 x 37 pixels only.
The ``cpu`` preset keeps the layer structure with fewer filters.
"""

import math

import keras
import numpy as np

from models.scorer import IMAGE_SHAPE

__all__ = [
    "PRESET_FILTERS",
    "N_PIXELS",
    "build_dense",
    "build_cnn",
    "choose_preset",
    "forward_flops",
    "set_mean_image",
]

N_PIXELS = math.prod(IMAGE_SHAPE)  # 1369
PRESET_FILTERS = {"paper": 128, "cpu": 32}
PAD = ((1, 2), (1, 2))  # 37 + 1 + 2 = 40


def choose_preset(preset="auto"):
    """``paper`` where TensorFlow sees a GPU, ``cpu`` otherwise (for ``auto``)."""
    if preset != "auto":
        if preset not in PRESET_FILTERS:
            raise ValueError(
                f"preset must be one of auto, {', '.join(PRESET_FILTERS)}; got {preset!r}"
            )
        return preset
    import tensorflow as tf

    return "paper" if tf.config.list_physical_devices("GPU") else "cpu"


def _softmax_image(pixels, offset=False):
    """Softmax over all pixels of (batch, 37, 37, 1) or (batch, 1369) logits.

    With ``offset``, a fixed per-pixel logit (set by :func:`set_mean_image`) is
    added first, carried by a bias-free Dense layer on a constant one so that the
    model needs no custom layer (1369 weights, 1369 multiply-adds per jet).
    """
    flat = keras.layers.Flatten(name="logits")(pixels)  # (batch, 1369)
    if offset:
        one = keras.ops.ones_like(flat[:, :1])  # (batch, 1)
        prior = keras.layers.Dense(
            N_PIXELS, use_bias=False, trainable=False, name="mean_image"
        )(one)  # (batch, 1369), = log(mean training image) for every jet
        flat = keras.layers.Add(name="logits_plus_mean")([flat, prior])
    probabilities = keras.layers.Softmax(name="softmax")(flat)  # (batch, 1369)
    return keras.layers.Reshape(IMAGE_SHAPE, name="image")(probabilities)


def build_dense(latent=6, hidden=32):
    """1369 -> 32 -> k -> 32 -> 1369 (softmax), reshaped to (37, 37, 1)."""
    images = keras.Input(IMAGE_SHAPE, name="images")  # (batch, 37, 37, 1)
    x = keras.layers.Flatten(name="flatten")(images)  # (batch, 1369)
    x = keras.layers.Dense(hidden, activation="relu", name="encoder_hidden")(x)
    code = keras.layers.Dense(latent, name="latent")(x)  # (batch, k)
    x = keras.layers.Dense(hidden, activation="relu", name="decoder_hidden")(code)
    x = keras.layers.Dense(N_PIXELS, name="decoder_output")(x)  # (batch, 1369)
    return keras.Model(images, _softmax_image(x), name="dense")


def build_cnn(latent=6, filters=128, hidden=32):
    """The study's convolutional autoencoder with ``filters`` per convolution."""

    def conv(n, name):
        return keras.layers.Conv2D(n, 3, padding="same", activation="relu", name=name)

    images = keras.Input(IMAGE_SHAPE, name="images")  # (batch, 37, 37, 1)
    x = keras.layers.ZeroPadding2D(PAD, name="pad")(images)  # (batch, 40, 40, 1)
    x = conv(filters, "encoder_conv1")(x)  # (batch, 40, 40, f)
    x = keras.layers.MaxPooling2D(2, name="encoder_pool1")(x)  # (batch, 20, 20, f)
    x = conv(filters, "encoder_conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="encoder_pool2")(x)  # (batch, 10, 10, f)
    x = conv(filters, "encoder_conv3")(x)
    x = keras.layers.Flatten(name="flatten")(x)  # (batch, 100 f)
    x = keras.layers.Dense(hidden, activation="relu", name="encoder_dense")(x)
    code = keras.layers.Dense(latent, name="latent")(x)  # (batch, k)
    x = keras.layers.Dense(hidden, activation="relu", name="decoder_dense")(code)
    x = keras.layers.Dense(100 * filters, activation="relu", name="decoder_expand")(x)
    x = keras.layers.Reshape((10, 10, filters), name="unflatten")(x)
    x = conv(filters, "decoder_conv1")(x)  # (batch, 10, 10, f)
    x = keras.layers.UpSampling2D(2, name="decoder_up1")(x)  # (batch, 20, 20, f)
    x = conv(filters, "decoder_conv2")(x)
    x = keras.layers.UpSampling2D(2, name="decoder_up2")(x)  # (batch, 40, 40, f)
    x = keras.layers.Conv2D(1, 3, padding="same", name="decoder_conv3")(x)
    x = keras.layers.Cropping2D(PAD, name="crop")(x)  # (batch, 37, 37, 1)
    return keras.Model(images, _softmax_image(x, offset=True), name="cnn")


def set_mean_image(autoencoder, mean_image, floor=1e-6):
    """Start the reconstruction from the mean training image (n, 37, 37[, 1]).

    Softmax outputs start uniform (1/1369 per pixel) while jet images put a large
    share of their pT in a few central pixels; from there Adam needs thousands of
    steps to reach even the mean image (a plateau near 1e-4 pixel MSE on real
    jets). Setting the output logits to log(mean image) starts training where PCA
    with k = 0 ends. Dense: the initial bias of the output layer (still trained).
    CNN: its last convolution has no per-pixel bias, so a fixed per-pixel logit is
    added before the softmax; the network learns the correction to the mean image.
    """
    logits = np.log(np.asarray(mean_image, np.float64).reshape(-1) + floor)
    logits = (logits - logits.mean()).astype(np.float32)  # (1369,)
    names = {layer.name for layer in autoencoder.layers}
    if "mean_image" in names:
        autoencoder.get_layer("mean_image").set_weights([logits[np.newaxis]])
    else:
        output = autoencoder.get_layer("decoder_output")
        output.set_weights([output.get_weights()[0], logits])


def forward_flops(model):
    """Floating-point operations of one forward pass per jet (multiply-adds x 2).

    Counted from the layer shapes: convolutions and dense layers only; pooling,
    upsampling, activations and the softmax add well under 1%.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_flops(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, out_channels = layer.output.shape
            in_channels = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            total += 2 * height * width * out_channels * in_channels * kh * kw
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total
