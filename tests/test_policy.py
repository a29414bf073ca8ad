"""Policies load, validate, and name the file and key when they are wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfa.risk.policy import PolicyError, load_policy, parse_policy


@pytest.mark.parametrize("name", ["default", "conservative"])
def test_packaged_policies_load(name: str) -> None:
    p = load_policy(name)
    assert p.name == name
    assert p.params.gamma.min <= p.params.gamma.default <= p.params.gamma.max


def test_policy_from_a_file(tmp_path: Path) -> None:
    text = (Path(__file__).parents[1] / "policies" / "default.yaml").read_text()
    f = tmp_path / "mine.yaml"
    f.write_text(text.replace("max_position: 50", "max_position: 7"))
    assert load_policy(f).market.max_position == 7


@pytest.mark.parametrize(
    "patch, message",
    [
        (("max_position: 50", "max_postion: 50"), "market.max_postion: unknown key"),
        (("max_position: 50", "max_position: -1"), "market.max_position"),
        (("max_position: 50", "max_position: .nan"), "market.max_position"),
        (("default: 0.1,", "default: 99.0,"), "params.gamma"),
        (("model: as", "model: black_scholes"), "quoting.model"),
        (("max_event_worst_loss: 300", "max_event_worst_loss: -1"), "max_event_worst_loss"),
        (("event_resume_below: 0.7", "event_resume_below: 0.95"), "event_resume_below"),
        (("event_resume_below: 0.7", "event_resume_belwo: 0.7"), "unknown key"),
    ],
)
def test_invalid_policy_names_key_and_file(
    tmp_path: Path, patch: tuple[str, str], message: str
) -> None:
    text = (Path(__file__).parents[1] / "policies" / "default.yaml").read_text()
    assert patch[0] in text
    f = tmp_path / "bad.yaml"
    f.write_text(text.replace(patch[0], patch[1], 1))
    with pytest.raises(PolicyError) as err:
        load_policy(f)
    assert str(f) in str(err.value)
    assert message in str(err.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError, match="no packaged policy named 'nope'"):
        load_policy("nope")
    with pytest.raises(PolicyError, match="not valid YAML"):
        parse_policy("a: [", "x.yaml")
    with pytest.raises(PolicyError, match="mapping"):
        parse_policy("- 1\n- 2", "x.yaml")
