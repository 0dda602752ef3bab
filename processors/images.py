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
float64 up to the normalized constituent weights; the pixel sums are float32.
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
    counts = ak.to_numpy(ak.num(pt, axis=1))  # (jets,)
    n_jets = len(counts)
    if n_jets == 0:
        return np.zeros((0, n_pixels, n_pixels), dtype=np.float32)
    if counts.min() == 0:
        raise ValueError(
            f"jet {int(np.argmin(counts))} has no constituents; a clustered jet "
            "always has one"
        )
    starts = np.cumsum(counts) - counts  # (jets,): first constituent of each jet

    def per_jet(values):  # (constituents,) -> (jets,) sums
        return np.add.reduceat(values, starts)

    def spread(values):  # (jets,) -> (constituents,)
        return np.repeat(values, counts)

    w = _flat(pt)  # (constituents,)
    x = _flat(eta) - spread(np.asarray(jet_eta, dtype=np.float64))
    y = _fold(_flat(phi) - spread(np.asarray(jet_phi, dtype=np.float64)))

    # 1. centroid shift
    total = per_jet(w)  # (jets,), positive
    x -= spread(per_jet(w * x) / total)
    y -= spread(per_jet(w * y) / total)

    # 2. rotate the major principal axis onto u
    wx = w * x
    theta = 0.5 * np.arctan2(2 * per_jet(wx * y), per_jet(wx * x - w * y * y))
    cos, sin = spread(np.cos(theta)), spread(np.sin(theta))
    u, v = x * cos + y * sin, y * cos - x * sin

    # 3. flip: sum(pt sign(u)) < 0 <=> more pT at u < 0 than at u > 0
    u *= spread(np.where(per_jet(w * np.sign(u)) < 0, -1.0, 1.0))
    v *= spread(np.where(per_jet(w * np.sign(v)) < 0, -1.0, 1.0))

    # 4. and 5. pixel indices, normalization over the window, accumulation
    width = window / n_pixels
    row = np.floor((u + window / 2) / width).astype(np.int64)
    col = np.floor((v + window / 2) / width).astype(np.int64)
    inside = (row >= 0) & (row < n_pixels) & (col >= 0) & (col < n_pixels)
    w = np.where(inside, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w /= spread(per_jet(w))  # 0/0 only for jets with nothing inside: not added
    jet = spread(np.arange(n_jets))
    pixel = ((jet * n_pixels + row) * n_pixels + col)[inside]
    images = np.zeros(n_jets * n_pixels * n_pixels, dtype=np.float32)
    np.add.at(images, pixel, w[inside].astype(np.float32))
    return images.reshape(n_jets, n_pixels, n_pixels)


def _flat(array):
    return np.asarray(ak.to_numpy(ak.flatten(array, axis=1)), dtype=np.float64)


def _fold(dphi):
    """Fold angle differences into (-pi, pi]."""
    if np.abs(dphi).max(initial=0.0) < 3 * np.pi:  # the usual case: phi in [-pi, pi]
        dphi = np.where(dphi > np.pi, dphi - 2 * np.pi, dphi)
        return np.where(dphi <= -np.pi, dphi + 2 * np.pi, dphi)
    return np.pi - (np.pi - dphi) % (2 * np.pi)
