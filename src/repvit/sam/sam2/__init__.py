"""The SAM 2 family of segment-anything models: EdgeTAM (SAM 2 with a RepViT image trunk and a 2D spatial
perceiver), for images and video.

Its parts go here: the model and its builder, the image predictor (``set_image``, ``predict``) and the video
predictor (``init_state``, ``add_new_points_or_box``, ``propagate_in_video``), the memory bank (memory encoder,
spatial perceiver, memory attention), and its checkpoint format (``edgetam.pt``, SAM 2's module names). Public
names are exported from :mod:`repvit.sam`.
"""

__all__: list[str] = []
