"""Neural networks for the image pipeline: embeddings, the U-Net, the course-lab baseline."""

from imgflow.nn.embeddings import (
    TIME_EMBEDDINGS,
    ClassEmbedding,
    FourierTimeEmbedding,
    SinusoidalTimeEmbedding,
    apply_label_drop,
    drop_labels,
    fourier_features,
    label_drop_mask,
    make_time_embedding,
    sinusoidal_features,
    time_vector,
)
from imgflow.nn.lab_unet import LabUNet
from imgflow.nn.unet import UNet, count_parameters

#: the networks model.arch names
ARCHS = {"unet": UNet, "lab_unet": LabUNet}

__all__ = [name for name in dir() if not name.startswith("_")]
