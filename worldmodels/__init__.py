"""worldmodels: World Models (Ha & Schmidhuber, 2018) in PyTorch.

V (a convolutional VAE) compresses frames to z, M (an MDN-RNN built on the ``mdn``
package) predicts the next z, and C (a linear controller evolved with CMA-ES) acts on
[z, h]. The stages are in ``worldmodels.stages``; docs/design.md describes the layout.
"""

__version__ = "0.1.0"

import gymnasium as _gymnasium

_gymnasium.register(
    id="worldmodels/Dream-v0",
    entry_point="worldmodels.dream_env:DreamEnv",
    vector_entry_point="worldmodels.dream_env:DreamVecEnv",
)
