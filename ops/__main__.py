"""``python -m mxr.ops``: the engine's command line."""
import os
import sys

# numpy's BLAS on one thread (unless the caller says otherwise), set before numpy loads: the engine
# runs its own threads on the cores, and OpenBLAS's threads for a small matrix mostly wait for each
# other (a 52 x 52 inverse, of which the network's fusion takes ~500 on WolfgangLanger_Pexels.mp4,
# took 3.9 ms instead of 0.05 on two busy cores).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .cli import main  # noqa: E402

sys.exit(main())
