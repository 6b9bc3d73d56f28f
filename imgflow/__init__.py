"""imgflow: flow matching and diffusion models on one shared core.

`imgflow.core` holds the math shared by the 2-D lab (`toy`) and the image pipeline:
schedules, probability paths, conversions between parameterisations, losses, ODE/SDE
dynamics and their solvers. Everything there is shape-agnostic: x is (B, ...) and
t is (B,) or broadcastable.
"""

__version__ = "0.1.0"
