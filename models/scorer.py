"""The scorer: an autoencoder wrapped so that it returns the anomaly score.

Every saved model, whatever its architecture, is one functional Keras model::

    images (batch, 37, 37, 1) -> {"loss": (batch,), "reconstruction": (batch, 37, 37, 1)}

with ``loss`` the mean over the 37 x 37 pixels of the squared difference between the
image and its reconstruction. It is built only from Keras layers and ``keras.ops``
calls, so that ``tf.keras.models.load_model`` reads ``model.keras`` without custom
objects (coffea's ``tf_wrapper`` loads it that way).
"""

import keras

__all__ = ["IMAGE_SHAPE", "make_scorer", "autoencoder_of"]

IMAGE_SHAPE = (37, 37, 1)


def make_scorer(autoencoder):
    """Wrap ``autoencoder`` (images -> reconstruction) into the scorer model."""
    images = keras.Input(IMAGE_SHAPE, name="images")  # (batch, 37, 37, 1)
    reconstruction = autoencoder(images)  # (batch, 37, 37, 1)
    squared = keras.ops.square(images - reconstruction)  # (batch, 37, 37, 1)
    loss = keras.ops.mean(squared, axis=(1, 2, 3))  # (batch,)
    outputs = {"loss": loss, "reconstruction": reconstruction}
    return keras.Model(images, outputs, name=f"scorer_{autoencoder.name}")


def autoencoder_of(scorer):
    """The autoencoder inside a scorer (to continue training or inspect it)."""
    for layer in scorer.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"model {scorer.name!r} contains no autoencoder sub-model")
