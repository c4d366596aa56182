"""The registry's table of lazily loaded families says what each module registers, and loading
stays lazy: a chain model's run creates none of the other families' classes."""

import subprocess
import sys

from cnncli.engine.layers import FAMILIES, all_types


def test_each_family_registers_exactly_the_types_its_entry_lists():
    registry = all_types()
    for family, names in FAMILIES.items():
        registered = {name for name, cls in registry.items() if cls.__module__.endswith(f".layers.{family}")}
        assert registered == set(names), family


def test_a_chain_model_loads_no_other_family():
    code = ("import sys; from cnncli.io.modelfile import load_model; load_model('digits'); "
            "print(sorted(m for m in sys.modules if m.startswith('cnncli.engine.layers.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == ["cnncli.engine.layers.base", "cnncli.engine.layers.core"]


def test_a_family_class_loads_its_module_when_asked_for():
    code = "from cnncli.engine.layers import Upsample; print(Upsample.types[0])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "upsample"
