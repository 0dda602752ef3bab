"""Principal component analysis as a fixed-weight Keras autoencoder.

The PCA "autoencoder" of the study projects the mean-subtracted flattened image on the
first k eigenvectors of the covariance matrix of the training images (encoder) and
maps back and adds the mean (decoder). It is fitted in closed form from streamed
batches (sum and sum of outer products), then expressed as two Dense layers whose
weights are the eigenvector matrices, so that it is saved, served and applied exactly
like the trained autoencoders.
"""

import keras
import numpy as np

from models.scorer import IMAGE_SHAPE

__all__ = ["CovarianceAccumulator", "PCAFit", "fit_pca", "build_pca"]

N_PIXELS = int(np.prod(IMAGE_SHAPE))  # 1369


class CovarianceAccumulator:
    """Running mean and covariance of flattened images, one batch at a time."""

    def __init__(self, n_features=N_PIXELS):
        self.n = 0
        self.total = np.zeros(n_features)  # (1369,)
        self.outer = np.zeros((n_features, n_features))  # (1369, 1369)

    def add(self, images):
        flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        self.n += len(flat)
        self.total += flat.sum(axis=0)
        self.outer += flat.T @ flat  # (1369, 1369)

    def result(self):
        if self.n < 2:
            raise ValueError(f"PCA needs at least 2 training images, got {self.n}")
        mean = self.total / self.n  # (1369,)
        covariance = (self.outer - self.n * np.outer(mean, mean)) / (self.n - 1)
        return mean, covariance


class PCAFit:
    """Mean image, eigenvalues (descending) and eigenvectors (as columns)."""

    def __init__(self, mean, eigenvalues, eigenvectors, n_images):
        self.mean = mean  # (1369,)
        self.eigenvalues = eigenvalues  # (1369,)
        self.eigenvectors = eigenvectors  # (1369, 1369), column i = component i
        self.n_images = n_images

    def components(self, latent):
        return self.eigenvectors[:, :latent]  # (1369, k)

    def reconstruct(self, images, latent):
        """Direct numpy projection on the first ``latent`` components."""
        shape = np.shape(images)
        flat = np.asarray(images, dtype=np.float64).reshape(shape[0], -1)
        v = self.components(latent)  # (1369, k)
        codes = (flat - self.mean) @ v  # (n, k)
        return (codes @ v.T + self.mean).reshape(shape)


def fit_pca(batches):
    """Fit PCA on an iterable of image batches, each (n, 37, 37[, 1])."""
    accumulator = CovarianceAccumulator()
    for batch in batches:
        accumulator.add(batch)
    mean, covariance = accumulator.result()
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(eigenvalues)[::-1]
    # Round-off makes the smallest eigenvalues slightly negative; they are zero.
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)
    return PCAFit(mean, eigenvalues, eigenvectors[:, order], accumulator.n)


def build_pca(fit, latent=6):
    """The fitted PCA as a Keras model images (batch, 37, 37, 1) -> same shape."""
    if not 1 <= latent <= N_PIXELS:
        raise ValueError(f"latent dimension must lie in [1, {N_PIXELS}], got {latent}")
    v = fit.components(latent).astype(np.float32)  # (1369, k)
    mean = fit.mean.astype(np.float32)  # (1369,)

    images = keras.Input(IMAGE_SHAPE, name="images")
    flat = keras.layers.Flatten(name="flatten")(images)  # (batch, 1369)
    encoder = keras.layers.Dense(latent, name="encoder", trainable=False)
    codes = encoder(flat)  # (batch, k) = (x - mean) V
    decoder = keras.layers.Dense(N_PIXELS, name="decoder", trainable=False)
    flat_out = decoder(codes)  # (batch, 1369) = codes V^T + mean
    output = keras.layers.Reshape(IMAGE_SHAPE, name="image")(flat_out)
    encoder.set_weights([v, -mean @ v])
    decoder.set_weights([v.T.copy(), mean])
    return keras.Model(images, output, name="pca")
