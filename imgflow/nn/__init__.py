"""Neural networks for the image pipeline: embeddings, conditioning, and the backbones of the registry.

Importing any part of imgflow.nn assembles the backbone registry (`imgflow.nn.backbones.BACKBONES`): the
project's U-Net, the course lab's U-Net, the DiT and the autoencoder are registered here, in this order.
"""

from imgflow.nn.autoencoder import AUTOENCODER, KLAutoencoder
from imgflow.nn.backbones import BACKBONES, Backbone, BuiltFor, backbone, backbones, register_backbone, unregister_backbone
from imgflow.nn.dit import DIT, DiT
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
from imgflow.nn.lab_unet import LAB_UNET, LabUNet
from imgflow.nn.unet import UNET, UNet, count_parameters

for _entry in (UNET, LAB_UNET, DIT, AUTOENCODER):
    register_backbone(_entry)

__all__ = [name for name in dir() if not name.startswith("_")]
