"""Face models: head models, their correspondence to the canonical face, retargeting.

numpy only, so Blender's own Python can use everything here.
"""
