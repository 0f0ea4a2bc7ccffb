"""The MVA study of AdaIN (Pilchen & Gascon 2024), reproducible: one command per study.

    python -m train.studies --study skip --workdir W --config.vgg=weights/flax

Each study (`train.studies.definitions.STUDIES`: ``skip``, ``style_weight``, ``alpha_grid``,
``input_norm``, ``statistics``) trains its variants with `train.train.train_and_evaluate`, in this
process, one after the other, into ``W/<variant>`` with the same data, seed and step budget
(`train.studies.runner`); a variant whose checkpoint has reached ``num_steps`` is not trained again.
Then it scores every variant on held-out content x style pairs (`train.studies.heldout`) and writes
``W/report.md`` with the loss curves, a table and a picture grid (`train.studies.report`). The data
split and the VGG's provenance are `train.studies.data`'s. See docs/studies.md.
"""
