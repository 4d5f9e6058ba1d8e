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


def _yaml_spec(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "labels, key",
    [("classes: [No, Yes]", "target.classes"), ("classes: [off, on]", "target.classes")],
)
def test_yaml_boolean_classes_are_refused_with_the_fix(tmp_path: Path, labels: str, key: str):
    path = _yaml_spec(tmp_path, f"name: bank\ntarget: {{name: y, task: binary, {labels}}}\n"
                                "features:\n  - {name: age, dtype: int}\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    text = str(err.value)
    assert text.startswith(f"{path}: invalid dataset spec: key '{key}'")
    assert 'quote the labels' in text and 'classes: ["No", "Yes"]' in text
    assert "\n" not in text


def test_yaml_boolean_categories_and_positive_class_are_refused(tmp_path: Path):
    path = _yaml_spec(tmp_path, 'name: bank\ntarget: {name: y, task: binary, classes: ["No", "Yes"], '
                                "positive_class: yes}\nfeatures:\n  - {name: default, dtype: category, "
                                "categories: [no, yes, unknown]}\n")
    text = str(pytest.raises(SpecError, load_spec, path).value)
    assert "key 'features[0] (default).categories': [false, true, 'unknown'] holds YAML booleans" in text
    assert 'categories: ["No", "Yes"]' in text
    assert "key 'target.positive_class': true is a YAML boolean" in text


def test_quoted_labels_load_as_strings(tmp_path: Path):
    path = _yaml_spec(tmp_path, 'name: bank\ntarget: {name: y, task: binary, classes: ["No", "Yes"], '
                                'positive_class: "Yes"}\nfeatures:\n  - {name: housing, dtype: category, '
                                'categories: ["no", "yes"]}\n')
    spec = load_spec(path)
    assert spec.target.classes == ("No", "Yes") and spec.feature("housing").categories == ("no", "yes")


def test_a_bad_feature_is_not_blamed_on_the_feature_list():
    raw = _raw()
    raw["features"] = [{"name": "age", "dtype": "decimal"}]
    text = str(pytest.raises(SpecError, parse_spec, raw, "bad.yaml").value)
    assert "key 'features[0] (age).dtype': Input should be" in text
    assert "at least 1 item" not in text and "key 'features':" not in text
    raw["features"] = []
    assert "key 'features': must not be empty" in str(pytest.raises(SpecError, parse_spec, raw, "bad.yaml").value)


def test_ignore_time_and_id_columns_are_declared_but_never_modelled():
    raw = _raw()
    raw.update(ignore=["notes", "branch"], time_column="applied_at")
    spec = parse_spec(raw)
    assert spec.landing_columns == [*spec.columns, "applied_at", "notes", "branch"]
    assert not {"notes", "branch", "applied_at", "application_id"} & set(spec.feature_names)
    for clash, key in ((["age"], "ignore"), (["default"], "ignore")):
        bad = _raw() | {"ignore": clash}
        assert f"'{key}' names {clash[0]}" in str(pytest.raises(SpecError, parse_spec, bad).value)
    bad = _raw() | {"ignore": ["application_id"]}
    assert "application_id listed more than once" in str(pytest.raises(SpecError, parse_spec, bad).value)


def test_invalid_yaml_is_one_line(tmp_path: Path):
    path = _yaml_spec(tmp_path, "name: x\ntarget: {name: y\nfeatures: []\n")
    text = str(pytest.raises(SpecError, load_spec, path).value)
    assert text.startswith(f"{path}: not valid YAML") and "\n" not in text
