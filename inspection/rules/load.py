"""A rule set from a YAML file (the `inspection.rules` section alone, or a whole site config holding one)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from ..config import ConfigError, Settings
from .config import RulesConfig
from .evaluate import RuleSet


def load_rules(path: Path, settings: Settings) -> RuleSet:
    """Read, validate and check FILE against the configured model and frame; ConfigError names the problem."""
    from ..detect.registry import load_spec

    if not path.is_file():
        raise ConfigError(f"rules file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"rules file {path} is not valid YAML: {exc}") from None
    if isinstance(data, dict) and "inspection" in data:
        data = (data.get("inspection") or {}).get("rules") or {}
    try:
        rules = RulesConfig.model_validate(data)
        names = load_spec(settings.model.name).class_names
        rules.check_against(names.values(), settings.grid.frame_width, settings.grid.frame_height, settings.line.cameras)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise ConfigError(f"rules file {path}: {where}: {first['msg']}") from None
    except ValueError as exc:
        raise ConfigError(f"rules file {path}: {exc}") from None
    return RuleSet.compile(rules, names)


def example_rules() -> RulesConfig:
    """The example rule set for the COCO demo model, shipped with the package (rules/coco_example.yaml)."""
    import importlib.resources

    text = (importlib.resources.files("inspection.rules") / "coco_example.yaml").read_text()
    return RulesConfig.model_validate(yaml.safe_load(text)["inspection"]["rules"])
