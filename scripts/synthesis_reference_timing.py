"""Same-machine timing of the reference library for `tumorbench synthesis` (geometry case
"deform ellipsoid r=16 x3"): elasticdeform.deform_random_grid(points=3, order=0) three times on
axis pairs (0,1), (1,2), (0,2) of a radius-16 ellipsoid (a medium tumor), sigma 4; and
scipy.ndimage.gaussian_filter on a 96^3 float32 grid (the blender's blur).
Needs elasticdeform (numpy<2). Usage: python3 scripts/synthesis_reference_timing.py [runs]
"""
import sys, time
import numpy as np
from scipy.ndimage import gaussian_filter
import elasticdeform
from synthesis_reference import get_ellipsoid

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10


def timed(f):
    f()  # warm-up
    t = []
    for _ in range(runs):
        t0 = time.perf_counter(); f(); t.append((time.perf_counter() - t0) * 1000)
    t.sort()
    return t[len(t) // 2], t[0]


geo = get_ellipsoid(16, 16, 16)


def deform():
    g = geo
    for ax in [(0, 1), (1, 2), (0, 2)]:
        g = elasticdeform.deform_random_grid(g, sigma=4, points=3, order=0, axis=ax)


print("python deform ellipsoid r=16 x3: median %.2f ms, min %.2f ms" % timed(deform))
a = np.random.uniform(0, 1, (96, 96, 96)).astype(np.float32)
for s in [2, 4, 7]:
    print("scipy gaussian_filter 96^3 sigma=%d: median %.2f ms, min %.2f ms" % ((s,) + timed(lambda: gaussian_filter(a, s))))
