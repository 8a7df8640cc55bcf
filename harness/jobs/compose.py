"""The harness's configs, composed as the command line composes them: for tests, benchmarks and notebooks.

No Hydra patching and no job machinery: importing this costs Hydra's import only.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.components import with_custom_options
from harness.core.config import Config, register, to_spec

# An installed wheel carries the configs as harness/conf; a source checkout (editable install) has them in conf/.
_PACKAGE = Path(__file__).resolve().parents[1]  # harness/
CONF_DIR = _PACKAGE / "conf" if (_PACKAGE / "conf" / "config.yaml").is_file() else _PACKAGE.parent / "conf"


def spec_from_overrides(*overrides: str) -> Config:
    """A validated Config composed from conf/ as the command line would.

    >>> spec_from_overrides("method=stop_gradient", "optimizer.lr=0.01").optimizer.lr
    0.01
    """
    from hydra import compose, initialize_config_dir

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_spec(compose("config", overrides=with_custom_options(list(overrides))))
