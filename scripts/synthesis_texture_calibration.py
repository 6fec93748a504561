"""Calibration of the procedural engine's texture (Sources/Synthesis/ProceduralTexture.swift).

SyntheticTumors (MrGiovanni/SyntheticTumors main.py, TumorGenerated/utils.py) pre-builds its
textures on a 420x300x320 grid: a = U(0,1) noise, a2 = gaussian_filter(a, sigma_a), then
min-max rescaling of a2 over that whole grid. TumorStream draws the texture per crop on a small
region instead, so it cannot take the min and max over the reference grid; it rescales with the
extremes the reference grid would have, expressed in standard deviations of a2 (z-scores).
This script measures those extremes (numpy seed 0, as the reference seeds it). Run time ~1 min.
Output, recorded in ProceduralTexture.swift:
  sigma_a mean std zmin zmax seconds
"""
import numpy as np, time
from scipy.ndimage import gaussian_filter
np.random.seed(0)
for sa in [3,6,9,12,15]:
    t=time.time()
    a=np.random.uniform(0,1,size=(420,300,320))
    a2=gaussian_filter(a,sigma=sa)
    m=a2.mean(); s=a2.std()
    print(sa, "mean",m,"std",s,"zmin",(a2.min()-0.5)/s,"zmax",(a2.max()-0.5)/s, time.time()-t, flush=True)
