"""Rendered traffic signs and road scenes with exact labels, for evaluation and demos.

No traffic-sign photographs with a clear licence exist in the project, so signs are drawn
(`signs`), composited onto the real photos shipped in `vlm_node/assets/photos` (`scenes`), and
readers are scored on them (`evaluate`).
"""
from vlm_node.tools.render.scenes import (Appearance, Photo, Scene, SignLabel, compose_scene,
                                          load_photos, make_road_scene, render_labelled_set)
from vlm_node.tools.render.signs import RENDERABLE_CLASSES, SignSpec, render_sign

__all__ = ["Appearance", "Photo", "RENDERABLE_CLASSES", "Scene", "SignLabel", "SignSpec",
           "compose_scene", "load_photos", "make_road_scene", "render_labelled_set",
           "render_sign"]
