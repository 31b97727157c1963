"""The scenario file contract (vreserve.scenario): the model, its published JSON Schema and the
packs agree, and the file refuses what the model refuses."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from vreserve.scenario import PACK_DIR, ScenarioError, ScenarioFile, known_packs, load_scenario

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "scenario.schema.json"


def validator() -> Draft202012Validator:
    doc = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(doc)
    return Draft202012Validator(doc)


@pytest.mark.parametrize("pack", ["wuhan", "shanghai"])
def test_every_pack_and_its_normalised_form_validate_against_the_published_schema(pack):
    assert pack in known_packs()
    raw = yaml.safe_load((PACK_DIR / f"{pack}.yaml").read_text())
    for doc in (raw, load_scenario(pack).to_dict()):
        errors = [e.message for e in validator().iter_errors(doc)]
        assert not errors, errors


def test_the_schema_refuses_what_the_model_refuses():
    raw = yaml.safe_load((PACK_DIR / "wuhan.yaml").read_text())
    for bad in ({**raw, "colour": "red"}, {**raw, "periods": 0},
                {**raw, "materials": [{**raw["materials"][0], "colour": "red"}]}, {**raw, "rescue_centres": []}):
        assert not validator().is_valid(bad)
        with pytest.raises(ScenarioError):
            load_scenario(bad)


def test_the_file_model_is_frozen():
    f = ScenarioFile.model_validate(yaml.safe_load((PACK_DIR / "wuhan.yaml").read_text()))
    with pytest.raises(ValidationError):
        f.periods = 3  # type: ignore[misc]
    assert f.to_scenario() == load_scenario("wuhan")
