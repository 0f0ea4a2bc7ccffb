"""What each study trains: its variants (config overrides) and what the MVA study reports about them.

A `Variant` is a name (its workdir under W), a label for tables and plots, and the config keys it sets
on top of the study's base config (train/configs/study.py). The alpha grid trains the style-weight
variants and differs only in what it evaluates: alpha is an inference-time control.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str  # directory under the study's workdir
    label: str  # in tables, legends and grids
    overrides: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    title: str
    variants: tuple[Variant, ...]
    expected: str  # what the MVA study reports (section), for the report and docs/studies.md
    alpha_grid: bool = False  # evaluate every variant at config.alphas


def _skip(skip: str, source: str) -> Variant:
    if skip == "none":
        return Variant("none", "no skip", {"skip": "none"})
    return Variant(f"{skip}-{source}", f"{skip}/{source}", {"skip": skip, "skip_source": source})


_STYLE_WEIGHTS = tuple(Variant(f"sw{w:g}", f"style weight {w:g}", {"style_weight": float(w)}) for w in (1, 10, 100))

STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("skip", "Skip connections from the encoder into the decoder (MVA study, section 3.2)",
          tuple(_skip(*v) for v in (("none", ""), ("add", "content"), ("add", "style"), ("add", "both"),
                                    ("concat", "content"), ("concat", "style"))),
          "Additive skips lower the training losses (adding the style's features lowers the style loss most) "
          "but look no better than no skip; concatenating the style's features over-stylizes (a 'transparent' "
          "content), concatenating the content's keeps the style and renders the content more faithfully."),
    Study("style_weight", "Style weight of the training loss (MVA study, section 3.1.1)", _STYLE_WEIGHTS,
          "Weight 1 transfers mostly the style's colours; higher weights transfer more texture, and the content "
          "becomes harder to recognise (held-out style loss falls, content loss and SSIM worsen as the weight grows)."),
    Study("alpha_grid", "Alpha x style weight (MVA study, section 3.1.2 and Figure 8)", _STYLE_WEIGHTS,
          "Alpha moves the output from the content (0) to the stylized result (1). At alpha 0 the decoder should "
          "reconstruct the content, and it does so worse as the training style weight grows.", alpha_grid=True),
    Study("input_norm", "ImageNet input normalisation before the normalised VGG (MVA study, section 2.3.3)",
          (Variant("none", "raw [0, 1] input", {"input_norm": "none"}),
           Variant("imagenet", "ImageNet mean/std", {"input_norm": "imagenet"})),
          "With ImageNet-normalised inputs the content and style losses are 5 to 10 times larger, the results "
          "darker, and training less stable."),
    Study("statistics", "Instance (AdaIN) against batch style statistics (MVA study, sections 2.1-2.2)",
          (Variant("instance", "instance (AdaIN)", {"statistics": "instance"}),
           Variant("batch", "batch (pooled)", {"statistics": "batch"})),
          "Batch statistics mix the styles of a mini-batch and cannot normalise the style of a single image: "
          "per-image held-out style loss should be worse than with instance statistics."),
)}


def select(study: Study, names: str | None) -> tuple[Variant, ...]:
    """The variants named in the comma-separated ``names`` (all when empty); ValueError for an unknown one."""
    if not names:
        return study.variants
    by_name = {v.name: v for v in study.variants}
    chosen = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in by_name:
            raise ValueError(f"study {study.name} has no variant {name!r} (it has {', '.join(by_name)})")
        chosen.append(by_name[name])
    return tuple(chosen)
