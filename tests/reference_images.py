"""Plain per-jet reference of the jet-image definition (loops on purpose).

Written independently of ``processors.images`` from the definition in its module
docstring: one jet at a time, one constituent at a time, with the ``math`` module.
The tests compare it pixel by pixel with the columnar code.
"""

import math

import numpy as np

N_PIXELS = 37
WINDOW = 3.2


def fold(angle):
    """Fold an angle difference into (-pi, pi]."""
    while angle > math.pi:
        angle -= 2 * math.pi
    while angle <= -math.pi:
        angle += 2 * math.pi
    return angle


def reference_image(jet_eta, jet_phi, pts, etas, phis):
    """The 37x37 image of one jet from its constituents' (pt, eta, phi) lists."""
    points = [
        (float(pt), float(eta) - jet_eta, fold(float(phi) - jet_phi))
        for pt, eta, phi in zip(pts, etas, phis, strict=True)
    ]
    total = sum(pt for pt, _, _ in points)

    # 1. centroid
    mean_x = sum(pt * x for pt, x, _ in points) / total
    mean_y = sum(pt * y for pt, _, y in points) / total
    points = [(pt, x - mean_x, y - mean_y) for pt, x, y in points]

    # 2. principal axis onto u
    sxx = sum(pt * x * x for pt, x, _ in points)
    syy = sum(pt * y * y for pt, _, y in points)
    sxy = sum(pt * x * y for pt, x, y in points)
    theta = 0.5 * math.atan2(2 * sxy, sxx - syy)
    c, s = math.cos(theta), math.sin(theta)
    points = [(pt, x * c + y * s, -x * s + y * c) for pt, x, y in points]

    # 3. flips
    if sum(p for p, u, _ in points if u < 0) > sum(p for p, u, _ in points if u > 0):
        points = [(pt, -u, v) for pt, u, v in points]
    if sum(p for p, _, v in points if v < 0) > sum(p for p, _, v in points if v > 0):
        points = [(pt, u, -v) for pt, u, v in points]

    # 4. and 5. pixels, then normalization over the window
    image = np.zeros((N_PIXELS, N_PIXELS))
    width = WINDOW / N_PIXELS
    for pt, u, v in points:
        row = math.floor((u + WINDOW / 2) / width)
        col = math.floor((v + WINDOW / 2) / width)
        if 0 <= row < N_PIXELS and 0 <= col < N_PIXELS:
            image[row, col] += pt
    inside = image.sum()
    if inside > 0:
        image /= inside
    return image.astype(np.float32)
