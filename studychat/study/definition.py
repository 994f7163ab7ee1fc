"""The study file (STUDY_FILE): its conditions, resolved against the settings, and its hash.

The researcher writes defaults once at the top of the file and overrides them per
condition; `load_study` resolves every condition completely (the settings fill what the
file leaves out: GPT_VERSION, GPT_TOKEN_LIMIT, PROLIFIC_CODE), so what the file
describes is exactly what runs. The sha256 of the resolved study in canonical JSON is
logged at start and stored with every session: the record names the version that ran.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictStr,
    ValidationError,
    model_validator,
)

from studychat.exceptions import StudyFileError
from studychat.settings import PROLIFIC_COMPLETION, Settings

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Name = Annotated[StrictStr, Field(pattern=NAME_PATTERN)]
Text = Annotated[StrictStr, Field(min_length=1)]


class ModelParameters(BaseModel):
    """What may be set for the whole study and overridden by a condition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Text | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    seed: int | None = None
    min_reply_seconds: Annotated[float, Field(ge=0, le=600)] | None = None
    completion_code: Text | None = None
    completion_url: Text | None = None


class ConditionSpec(ModelParameters):
    """One condition as the file states it."""

    weight: Annotated[int, Field(ge=0)] = 1
    system_prompt: Text
    opening_message: Text | None = None
    client: dict[str, JsonValue] | None = None


class StudySpec(ModelParameters):
    """The whole file as written."""

    name: Name
    max_turns: Annotated[int, Field(ge=1, le=1000)] = 30
    conditions: dict[Name, ConditionSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _someone_can_be_assigned(self) -> StudySpec:
        if not any(condition.weight for condition in self.conditions.values()):
            raise ValueError("at least one condition needs a weight above 0")
        return self


@dataclass(frozen=True)
class Condition:
    """One condition with every parameter resolved: what its participants get."""

    name: str
    weight: int
    system_prompt: str
    opening_message: str | None
    model: str
    max_tokens: int
    temperature: float | None
    top_p: float | None
    seed: int | None
    min_reply_seconds: float
    completion_code: str
    completion_url: str
    client: dict[str, Any]

    def model_options(self) -> dict[str, Any]:
        """The request options the model is called with (those set)."""
        options = {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}
        return {key: value for key, value in options.items() if value is not None}


@dataclass(frozen=True)
class Study:
    """The resolved study: its name, turn limit and conditions, and their hash."""

    name: str
    max_turns: int
    conditions: dict[str, Condition]

    def document(self) -> dict[str, Any]:
        """The resolved study as plain JSON: what `study show` prints and the hash covers."""
        return {
            "name": self.name,
            "max_turns": self.max_turns,
            "conditions": {name: vars(c) for name, c in self.conditions.items()},
        }

    @cached_property
    def hash(self) -> str:
        """sha256 of the resolved study in canonical JSON (sorted keys, no spaces, UTF-8)."""
        canonical = json.dumps(
            self.document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def weights(self) -> dict[str, int]:
        """Each condition's weight, in the file's order."""
        return {name: condition.weight for name, condition in self.conditions.items()}


def resolve(spec: StudySpec, settings: Settings) -> Study:
    """The study with every condition's parameters filled from the study, then settings."""
    return Study(
        name=spec.name,
        max_turns=spec.max_turns,
        conditions={
            name: _resolve_condition(name, condition, spec, settings)
            for name, condition in spec.conditions.items()
        },
    )


def _resolve_condition(
    name: str, condition: ConditionSpec, study: StudySpec, settings: Settings
) -> Condition:
    def pick(field: str) -> Any:
        own = getattr(condition, field)
        return own if own is not None else getattr(study, field)

    code = pick("completion_code") or settings.PROLIFIC_CODE
    url = pick("completion_url") or (
        settings.PROLIFIC_URL
        if code == settings.PROLIFIC_CODE and settings.PROLIFIC_URL
        else PROLIFIC_COMPLETION.format(code=code)
    )
    return Condition(
        name=name,
        weight=condition.weight,
        system_prompt=condition.system_prompt,
        opening_message=condition.opening_message,
        model=pick("model") or settings.GPT_VERSION,
        max_tokens=pick("max_tokens") or settings.GPT_TOKEN_LIMIT,
        temperature=pick("temperature"),
        top_p=pick("top_p"),
        seed=pick("seed"),
        min_reply_seconds=pick("min_reply_seconds") or 0.0,
        completion_code=code,
        completion_url=url,
        client=condition.client or {},
    )


def load_configured_study(settings: Settings) -> Study | None:
    """The study STUDY_FILE names, None when it names none."""
    return load_study(settings.STUDY_FILE, settings) if settings.STUDY_FILE else None


def load_study(path: str | Path, settings: Settings) -> Study:
    """The study in the YAML file at `path`, or StudyFileError naming the field and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise StudyFileError(f"Study file {path} cannot be read: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise StudyFileError(
            f"Study file {path} is not valid YAML: {_yaml_problem(error)}"
        ) from None
    if not isinstance(data, dict):
        raise StudyFileError(f"Study file {path} must be a mapping with name and conditions.")
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as error:
        raise StudyFileError(f"Study file {path}: {_describe(error, text)}") from None
    return resolve(spec, settings)


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    return f"{problem} (line {mark.line + 1})" if mark is not None else problem


def _describe(error: ValidationError, text: str) -> str:
    """The first problem: the field's dotted path, its line, and what is wrong."""
    first = error.errors(include_url=False, include_input=False)[0]
    loc = [str(part) for part in first["loc"]]
    field = ".".join(loc) or "the file"
    line = line_of(text, loc)
    where = f" (line {line})" if line else ""
    if first["type"] == "missing":
        return f"field {field} is required{where}."
    if first["type"] == "extra_forbidden":
        return f"field {field} is not a known field{where}; see docs/study-file.md."
    return f"field {field}{where}: {first['msg']}."


def line_of(text: str, path: list[str]) -> int | None:
    """The line (from 1) of the deepest node of `path` the YAML document holds."""
    node: Any = yaml.compose(text)
    line = None
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            break
        found = [(k, v) for k, v in node.value if getattr(k, "value", None) == key]
        if not found:
            break
        key_node, node = found[0]
        line = key_node.start_mark.line + 1
    return line
