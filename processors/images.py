"""Preprocessed jet images, columnar: every jet of a chunk at once.

Definition (physics.md, the five steps in this order), for one jet with axis
(eta_J, phi_J) and constituents (pt_i, eta_i, phi_i):

0. relative coordinates: ``x_i = eta_i - eta_J`` (eta-like) and
   ``y_i = phi_i - phi_J`` folded into (-pi, pi] (phi-like), so that jets near
   phi = +-pi are whole;
1. centroid shift: subtract the pT-weighted means, ``x -= sum(pt x) / sum(pt)``,
   same for ``y``;
2. rotation: with the pT-weighted second moments ``Sxx = sum(pt x^2)``,
   ``Syy = sum(pt y^2)``, ``Sxy = sum(pt x y)``, the major principal axis makes the
   angle ``theta = atan2(2 Sxy, Sxx - Syy) / 2`` with the x axis; the rotated
   coordinates are ``u = x cos(theta) + y sin(theta)`` (along the major axis, the
   "vertical" one: image rows) and ``v = -x sin(theta) + y cos(theta)`` (columns);
3. flip: ``u -> -u`` when the pT with ``u < 0`` exceeds the pT with ``u > 0``; then
   ``v -> -v`` when the pT with ``v < 0`` exceeds the pT with ``v > 0`` (ties: no
   flip), so the larger halves are at positive u ("up") and positive v ("right");
4. normalize: divide pT by the total pT of the constituents that fall inside the
   image window, so every image sums to 1 (a jet with nothing inside stays all
   zeros); constituents outside the 3.2 x 3.2 window are rare for R = 1.5 and not
   counted;
5. pixelate: 37 x 37 pixels over ``[-1.6, 1.6)`` in u and v, pixel width
   ``3.2 / 37``; pixel ``(i, j)`` holds the constituents with
   ``i = floor((u + 1.6) / width)`` and ``j = floor((v + 1.6) / width)``, the
   lower pixel edge included, the upper excluded.

So ``image[i, j]``: row i is the u (eta-like, major-axis) bin and column j the v
(phi-like) bin, both increasing with the index; ``imshow(image, origin="lower")``
shows the major axis vertical and the larger intensity upper right. Arithmetic is
float64; images are float32.
"""

import awkward as ak
import numpy as np

__all__ = ["N_PIXELS", "WINDOW", "jet_images"]

N_PIXELS = 37
WINDOW = 3.2


def jet_images(jet_eta, jet_phi, pt, eta, phi, n_pixels=N_PIXELS, window=WINDOW):
    """Images of many jets at once.

    ``jet_eta``, ``jet_phi``: (jets,); ``pt``, ``eta``, ``phi``: (jets, var)
    awkward arrays of each jet's constituents. Returns a numpy float32 array
    (jets, n_pixels, n_pixels).
    """
    counts = ak.to_numpy(ak.num(pt, axis=1))
    n_jets = len(counts)
    owner = np.repeat(np.arange(n_jets), counts)  # (constituents,): jet of each
    w = _flat(pt)  # (constituents,)
    x = _flat(eta) - np.asarray(jet_eta, dtype=np.float64)[owner]
    y = _fold(_flat(phi) - np.asarray(jet_phi, dtype=np.float64)[owner])

    def per_jet(values):  # (constituents,) -> (jets,) sums
        return np.bincount(owner, values, minlength=n_jets)

    # 1. centroid shift
    total = per_jet(w)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = x - (per_jet(w * x) / total)[owner]
        y = y - (per_jet(w * y) / total)[owner]

    # 2. rotate the major principal axis onto u
    theta = 0.5 * np.arctan2(2 * per_jet(w * x * y), per_jet(w * (x * x - y * y)))
    cos, sin = np.cos(theta)[owner], np.sin(theta)[owner]
    u, v = x * cos + y * sin, -x * sin + y * cos

    # 3. flip the heavier halves to positive u and v
    u = np.where((per_jet(w * (u < 0)) > per_jet(w * (u > 0)))[owner], -u, u)
    v = np.where((per_jet(w * (v < 0)) > per_jet(w * (v > 0)))[owner], -v, v)

    # 4. and 5. pixel indices, normalization over the window, accumulation
    width = window / n_pixels
    row = np.floor((u + window / 2) / width)
    col = np.floor((v + window / 2) / width)
    inside = (row >= 0) & (row < n_pixels) & (col >= 0) & (col < n_pixels)
    owner, w = owner[inside], w[inside]
    norm = np.bincount(owner, w, minlength=n_jets)  # (jets,)
    pixel = (owner * n_pixels + row[inside].astype(np.int64)) * n_pixels + col[
        inside
    ].astype(np.int64)
    images = np.bincount(pixel, w / norm[owner], minlength=n_jets * n_pixels**2)
    return images.astype(np.float32).reshape(n_jets, n_pixels, n_pixels)


def _flat(array):
    return np.asarray(ak.to_numpy(ak.flatten(array, axis=1)), dtype=np.float64)


def _fold(dphi):
    """Fold angle differences into (-pi, pi]."""
    return np.pi - (np.pi - dphi) % (2 * np.pi)
