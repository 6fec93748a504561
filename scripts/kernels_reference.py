#!/usr/bin/env python3
"""Reference values for Tests/KernelsTests (GaussianFilterTests.testMatchesScipyGoldenValues).

Input: x[i] = sin(0.37 * i) for i in 0..<60, shape (3, 4, 5), float64.
Prints scipy.ndimage.gaussian_filter(x, sigma, mode='reflect', truncate=4.0) for two sigmas,
flattened, as Swift array literals.
"""
import numpy as np
from scipy.ndimage import gaussian_filter

x = np.sin(0.37 * np.arange(60, dtype=np.float64)).reshape(3, 4, 5)
for sigma in [(0.8, 0.0, 1.5), (2.0, 0.6, 0.0)]:
    y = gaussian_filter(x, sigma=sigma, mode="reflect", truncate=4.0)
    print(f"// sigma {sigma}")
    print("[" + ", ".join(f"{v:.7f}" for v in y.ravel()) + "]")
