"""Statistics of the SyntheticTumors texture rule (peers.md §1a, get_predefined_texture) on a
200^3 grid, for ProceduralEngineTests.testTextureMatchesReferenceStatistics. The rule, from its
description: a = U(0,1) noise, gaussian_filter(sigma_a), min-max rescaled to [base, base+scale];
b = 1[a > U(0,1)], gaussian_filter(sigma_b); texture = clip(u0 / mean(b[b > 0.12]) * b, 0, 1).
Output on this machine (numpy seed 0, scale 0.2, base 0.05, u0 0.525):
  3 4 texture mean 0.525 std 0.036
  15 7 texture mean 0.520 std 0.069
  9 4 texture mean 0.510 std 0.069
"""
import numpy as np
from scipy.ndimage import gaussian_filter

np.random.seed(0)
for sa, sb in [(3, 4), (15, 7), (9, 4)]:
    a = gaussian_filter(np.random.uniform(0, 1, (200, 200, 200)), sa)
    a = 0.2 * (a - a.min()) / (a.max() - a.min()) + 0.05
    b = gaussian_filter((a > np.random.uniform(0, 1, a.shape)).astype(float), sb)
    t = np.clip(0.525 / b[b > 0.12].mean() * b, 0, 1)
    print(sa, sb, "texture mean %.3f std %.3f" % (t.mean(), t.std()))
