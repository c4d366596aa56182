"""docs/layers.md lists every layer type cnn knows, so a type added to the registry cannot go undocumented."""

import re

from conftest import ROOT

from cnncli.engine.layers import ALIASES, all_types


def test_every_layer_type_and_alias_is_documented():
    text = (ROOT / "docs" / "layers.md").read_text()
    listed = set(re.findall(r"`([a-z0-9_]+)`", text))
    missing = sorted(name for name in (*all_types(), *ALIASES) if name not in listed)
    assert not missing, f"docs/layers.md does not list: {', '.join(missing)}"
