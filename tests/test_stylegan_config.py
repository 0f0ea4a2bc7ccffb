"""adain_jax.stylegan.config: validation, the layer plan, and the dict round trip for checkpoints."""

import dataclasses

import pytest

from adain_jax.stylegan import config as C


@pytest.mark.parametrize("resolution, layers", [(8, 4), (16, 6), (32, 8), (1024, 18)])
def test_two_style_layers_per_resolution_from_4x4(resolution, layers):
    # 1024 px: 4, 8, ..., 1024 is 9 resolutions, the paper's 18 styles.
    assert C.num_style_layers(C.GeneratorConfig(resolution=resolution)) == layers


def test_features_halve_per_resolution_down_to_the_minimum():
    cfg = C.GeneratorConfig(resolution=64, max_features=128, min_features=32)
    assert [C.features(cfg, r) for r in (4, 8, 16, 32, 64)] == [128, 64, 32, 32, 32]


@pytest.mark.parametrize("kwargs", [dict(resolution=12), dict(resolution=4), dict(resolution=0),
                                    dict(mapping_layers=0), dict(use_styles=False),
                                    dict(min_features=64, max_features=32), dict(channels=0)])
def test_bad_generator_configs_are_refused(kwargs):
    with pytest.raises(ValueError):
        C.GeneratorConfig(**kwargs)


def test_ablation_rows_are_valid_configs():
    # The rows as train.ablation builds them: its switches on the digits config, then the generator's
    # config (whose validation refuses a broken row, e.g. no styles and no input layer).
    from train import ablation, gan
    from train.configs import stylegan_digits

    base = stylegan_digits.get_config()
    fields = {f.name for f in dataclasses.fields(C.GeneratorConfig)}
    for row in ablation.ROWS:
        assert set(row.switches) <= set(base.keys()), row.name  # a misspelt switch would be a new, unread key
        cfg = gan.generator_config(ablation.row_config(base, row))
        assert {k: getattr(cfg, k) for k in row.switches if k in fields} == \
            {k: v for k, v in row.switches.items() if k in fields}, row.name


def test_bad_discriminator_configs_are_refused():
    with pytest.raises(ValueError):
        C.DiscriminatorConfig(resolution=24)
    with pytest.raises(ValueError):
        C.DiscriminatorConfig(mbstd_group=0)


def test_configs_are_hashable_and_frozen():
    cfg = C.GeneratorConfig()
    assert hash(cfg) == hash(C.GeneratorConfig())
    assert {cfg: 1}[C.GeneratorConfig()] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.resolution = 32


def test_dict_round_trip_and_unknown_keys():
    cfg = C.GeneratorConfig(resolution=32, channels=3, use_noise=False)
    assert C.generator_config_from_dict(C.to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="unknown"):
        C.generator_config_from_dict({**C.to_dict(cfg), "fused_scale": True})
