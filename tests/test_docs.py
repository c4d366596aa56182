"""docs/layers.md lists every layer type cnn knows, so a type added to the registry cannot go undocumented."""

import re

from conftest import ROOT

from cnncli.engine.layers import ALIASES, all_types


def test_every_layer_type_and_alias_is_documented():
    text = (ROOT / "docs" / "layers.md").read_text()
    listed = set(re.findall(r"`([a-z0-9_]+)`", text))
    missing = sorted(name for name in (*all_types(), *ALIASES) if name not in listed)
    assert not missing, f"docs/layers.md does not list: {', '.join(missing)}"


def test_every_input_rule_key_and_option_is_documented():
    """docs/input.md lists every key of a model file's input object and every option of an input rule."""
    from cnncli.io.input_rule import INPUT_KEYS
    from cnncli.run import INPUT_RULE

    text = (ROOT / "docs" / "input.md").read_text()
    missing = [f"`{key}`" for key in INPUT_KEYS if f"| `{key}` |" not in text]
    missing += [f"--{name}" for name in INPUT_RULE if f"`--{name}" not in text]
    assert not missing, f"docs/input.md does not list: {', '.join(missing)}"
