from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ai_factory.settings import PACKAGE_DIR
from ai_factory.spec import DType, SpecError, TaskType, load_spec, parse_spec

SPEC_PATH = PACKAGE_DIR / "specs" / "credit_default.yaml"


def _raw() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def test_demo_spec_loads():
    spec = load_spec(SPEC_PATH)
    assert spec.name == "credit_default"
    assert spec.target.task is TaskType.BINARY
    assert len(spec.features) >= 20
    assert {f.dtype for f in spec.features} == {DType.INT, DType.FLOAT, DType.CATEGORY, DType.BOOL}
    assert spec.columns[-2:] == ["default", "application_id"]
    assert set(spec.key_features) == {"age", "annual_income", "credit_score"}


def test_fingerprint_is_stable_and_content_sensitive():
    a, b = load_spec(SPEC_PATH), load_spec(SPEC_PATH)
    assert a.fingerprint() == b.fingerprint()
    raw = _raw()
    raw["features"][0]["max"] = 99
    assert parse_spec(raw).fingerprint() != a.fingerprint()


@pytest.mark.parametrize(
    "mutate, key, message",
    [
        (lambda r: r.pop("target"), "target", "required key is missing"),
        (lambda r: r["features"][2].update(dtype="decimal"), "features[2] (loan_amount).dtype", "Input should be"),
        (lambda r: r["features"][0].update(min=200), "features[0] (age)", "'min' (200.0) is greater than 'max'"),
        (lambda r: r["features"][15].update(categories=[]), "features[15] (employment_type)", "non-empty 'categories'"),
        (lambda r: r["target"].update(task="ranking"), "target.task", "Input should be"),
        (lambda r: r["target"].update(classes=[0, 1, 2]), "target", "exactly 2 'classes'"),
        (lambda r: r.update(colour="blue"), "colour", "unknown key"),
        (lambda r: r["features"].append({"name": "age", "dtype": "int"}), "<root>", "duplicate feature names: age"),
        (lambda r: r["features"][1].update(name="annual income"), "features[1] (annual income).name", "pattern"),
    ],
)
def test_malformed_spec_names_the_key(mutate, key, message):
    raw = _raw()
    mutate(raw)
    with pytest.raises(SpecError) as err:
        parse_spec(raw, source="bad.yaml")
    text = str(err.value)
    assert text.startswith("bad.yaml: invalid dataset spec")
    assert f"key '{key}'" in text
    assert message in text


def test_unreadable_and_non_mapping_specs(tmp_path: Path):
    with pytest.raises(SpecError, match="cannot read spec file"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        load_spec(bad)
