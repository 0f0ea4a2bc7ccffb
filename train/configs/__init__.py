"""Training configs: each module's ``get_config()`` returns an ``ml_collections.ConfigDict``.

Pass one with ``--config train/configs/<name>.py`` and override keys with ``--config.key=value``.
"""
