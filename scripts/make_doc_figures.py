"""Regenerate the figures the notebooks show (nbs/figures/*.png), from synthetic faces only.

Run: python scripts/make_doc_figures.py
No real face goes into the repository: the figures use focusface.synthfaces identities.
"""

from pathlib import Path

import numpy as np

from focusface.files import atomic_write_bytes, save_figure
from focusface.images import encode_image
from focusface.masks import gallery_figure
from focusface.maskspec import DEFAULT_SPEC
from focusface.synthfaces import identity_grid

OUT = Path(__file__).resolve().parents[1] / "nbs" / "figures"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    from focusface.synthfaces import render_faces

    faces = render_faces(0, np.arange(6) + 100, np.zeros(6, int))
    save_figure(gallery_figure(faces), OUT / "mask_gallery.png")  # a label over every column
    atomic_write_bytes(
        OUT / "synthetic_identities.png",
        encode_image(identity_grid(seed=0, identities=8, images=6, spec=DEFAULT_SPEC), ".png"),
        sources=(),
        kind=None,
    )
    print("wrote", *sorted(p.name for p in OUT.glob("*.png")))


if __name__ == "__main__":
    main()
