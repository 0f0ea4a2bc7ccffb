"""adain_jax.io.sheets: contact sheet layout, labels and captions."""

import numpy as np
import pytest

from adain_jax.io.sheets import contact_sheet


def test_contact_sheet_layout():
    wide = np.zeros((10, 40, 3), np.float32)  # black, 4:1
    square = np.full((30, 30, 3), 0.5, np.float32)
    plain = contact_sheet([[wide, square, wide], [square]], cell=64)
    gap = 4  # max(4, 64 // 32)
    assert plain.dtype == np.float32 and plain.shape == (2 * 64 + 3 * gap, 3 * 64 + 4 * gap, 3)
    assert plain.min() >= 0.0 and plain.max() <= 1.0
    # the wide image fills the cell's width, is centred vertically on white
    cell = plain[gap : gap + 64, gap : gap + 64]
    assert (cell[:20] == 1.0).all() and (cell[-20:] == 1.0).all() and (cell[28:36] == 0.0).all()
    # the missing cells of the short second row stay white
    assert (plain[2 * gap + 64 : 2 * gap + 128, 2 * gap + 64 :] == 1.0).all()

    labelled = contact_sheet([[wide, square, wide]], labels=["content", "style", "result"], cell=64)
    titled = contact_sheet(
        [[wide, square, wide]], labels=["content", "style", "result"], cell=64, header="AdaIN demo"
    )
    assert labelled.shape[1] == titled.shape[1] == plain.shape[1]
    assert 64 + 2 * gap < labelled.shape[0] < titled.shape[0]
    assert (labelled[: labelled.shape[0] - 64 - gap] < 1.0).any()  # some text was drawn
    with pytest.raises(ValueError):
        contact_sheet([[wide]], labels=["a", "b"])
    with pytest.raises(ValueError):
        contact_sheet([])


def test_contact_sheet_row_labels_add_a_caption_above_each_row():
    square = np.full((30, 30, 3), 0.5, np.float32)
    plain = contact_sheet([[square], [square]], cell=64)
    captioned = contact_sheet([[square], [square]], cell=64, row_labels=["alpha 1", "preserve colour"])
    assert captioned.shape[1] == plain.shape[1] and captioned.shape[0] > plain.shape[0]
    gap = 4
    caption_h = (captioned.shape[0] - plain.shape[0]) // 2
    assert (captioned[gap : gap + caption_h] < 1.0).any()  # the first caption was drawn above row 1
    with pytest.raises(ValueError, match="2 row labels for 1 rows"):
        contact_sheet([[square]], row_labels=["a", "b"])
