"""Masked face recognition: FocusFace (multi-task contrastive learning) with its data formats, synthetic masks and evaluation"""

__version__ = "0.1.0"
