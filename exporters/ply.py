"""The Inria 3DGS PLY layout: the codec lives with the model, in :mod:`recon.models.splats_io`."""

from recon.models.splats_io import (  # noqa: F401
    encode_ply_header,
    property_names,
    read_ply,
    read_ply_comments,
    write_ply,
)
