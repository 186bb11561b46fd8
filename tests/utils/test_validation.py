"""evomerge.validation: one-line pydantic and YAML errors; evomerge.errors.did_you_mean."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evomerge.errors import ConfigError, RunDirError, did_you_mean
from evomerge.validation import format_validation_error, format_yaml_error, parse_yaml, read_yaml, show_value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CmaesOptions(_Strict):
    sigma0: float = 0.3
    population_size: int | None = None


class Cmaes(_Strict):
    name: Literal["cmaes"] = "cmaes"
    options: CmaesOptions = Field(default_factory=CmaesOptions)


class M2N2(_Strict):
    name: Literal["m2n2"]
    archive_size: int = 4


class Space(_Strict):
    layer_groups: int | list[int] = 1
    ranges: dict[str, tuple[float, float]] = {}


class Task(_Strict):
    name: str
    weight: float = 1.0


class Cfg(_Strict):
    driver: Annotated[Cmaes | M2N2, Field(discriminator="name")] = Field(default_factory=Cmaes)
    space: Space = Field(default_factory=Space)
    tasks: list[Task] = []
    seed: int = 0
    label: str = ""


def _line(config, **kw) -> str:
    with pytest.raises(ValidationError) as info:
        Cfg.model_validate(config)
    return format_validation_error(info.value, "c.yaml", Cfg, **kw)


@pytest.mark.parametrize(
    "data, key_line, path_line",
    [
        (
            {"driver": {"name": "cmaz"}},
            "c.yaml: key 'driver.name': unknown driver 'cmaz' (did you mean 'cmaes'?)",
            "c.yaml: driver.name: unknown driver 'cmaz' (did you mean 'cmaes'?)",
        ),
        (
            {"driver": {"name": "pso"}},
            "c.yaml: key 'driver.name': unknown driver 'pso' (known: cmaes, m2n2)",
            "c.yaml: driver.name: unknown driver 'pso' (known: cmaes, m2n2)",
        ),
        (
            {"driver": {"options": {}}},
            "c.yaml: missing key 'driver.name' (one of: cmaes, m2n2)",
            "c.yaml: driver.name: missing key (one of: cmaes, m2n2)",
        ),
        (  # the member's tag is dropped from the key, and the hint comes from that member's fields
            {"driver": {"name": "cmaes", "options": {"sigma": 0.5}}},
            "c.yaml: unknown key 'driver.options.sigma' (did you mean 'driver.options.sigma0'?)",
            "c.yaml: driver.options.sigma: unknown key (did you mean 'sigma0'?)",
        ),
        (
            {"driver": {"name": "m2n2", "archive": 3}},
            "c.yaml: unknown key 'driver.archive' (did you mean 'driver.archive_size'?)",
            "c.yaml: driver.archive: unknown key (did you mean 'archive_size'?)",
        ),
        (
            {"driver": {"name": "cmaes", "options": {"sigma0": "big"}}},
            "c.yaml: key 'driver.options.sigma0': Input should be a valid number, unable to parse string as a "
            "number (got 'big')",
            "c.yaml: driver.options.sigma0 = 'big': Input should be a valid number, unable to parse string as a number",
        ),
        (  # a smart union's member name ('int') is dropped too
            {"space": {"layer_groups": "two"}},
            "c.yaml: key 'space.layer_groups': Input should be a valid integer, unable to parse string as an "
            "integer (got 'two')",
            "c.yaml: space.layer_groups = 'two': Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            {"space": {"layer_group": 2}},
            "c.yaml: unknown key 'space.layer_group' (did you mean 'space.layer_groups'?)",
            "c.yaml: space.layer_group: unknown key (did you mean 'layer_groups'?)",
        ),
        (
            {"spaces": {}},
            "c.yaml: unknown key 'spaces' (did you mean 'space'?)",
            "c.yaml: spaces: unknown key (did you mean 'space'?)",
        ),
        (
            {"zzz": 1},
            "c.yaml: unknown key 'zzz' (known keys: driver, space, tasks, seed, label)",
            "c.yaml: zzz: unknown key (known keys: driver, space, tasks, seed, label)",
        ),
        (
            {"tasks": [{"name": "a"}, {"name": "b", "wieght": 2}]},
            "c.yaml: unknown key 'tasks.1.wieght' (did you mean 'tasks.1.weight'?)",
            "c.yaml: tasks[1].wieght: unknown key (did you mean 'weight'?)",
        ),
        ({"tasks": [{}]}, "c.yaml: missing key 'tasks.0.name'", "c.yaml: tasks[0].name: missing key"),
        (
            {"label": True},
            "c.yaml: key 'label': Input should be a valid string (got true)",
            "c.yaml: label = true: Input should be a valid string",
        ),
    ],
)
def test_both_layouts(data, key_line, path_line):
    assert _line(data) == key_line
    assert _line(data, layout="path") == path_line


def test_prefix_named_items_and_no_source():
    data = {"tasks": [{"name": "a"}, {"name": "copy", "weight": "x"}]}
    assert _line(data, layout="path", data=data, named_items={"tasks": "task"}) == (
        "c.yaml: task 'copy': weight = 'x': Input should be a valid number, unable to parse string as a number"
    )
    assert _line({"seed": "x"}, prefix="run.") == (
        "c.yaml: key 'run.seed': Input should be a valid integer, unable to parse string as an integer (got 'x')"
    )
    with pytest.raises(ValidationError) as info:
        Cfg.model_validate({"sed": 1})
    assert format_validation_error(info.value) == "unknown key 'sed'"  # no model: no hint
    assert format_validation_error(info.value, "", Cfg, layout="path") == "sed: unknown key (did you mean 'seed'?)"


class Checked(_Strict):
    low: float = 0.0
    high: float = 1.0

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


def test_model_level_error_has_no_key():
    with pytest.raises(ValidationError) as info:
        Checked.model_validate({"low": 2.0})
    assert format_validation_error(info.value, "r.yaml", Checked) == "r.yaml: low 2.0 is above high 1.0"
    assert format_validation_error(info.value, "r.yaml", Checked, layout="path") == "r.yaml: low 2.0 is above high 1.0"


def test_did_you_mean():
    assert did_you_mean("cmaz", ["cmaes", "m2n2"]) == " (did you mean 'cmaes'?)"
    assert did_you_mean("pso", ["cmaes", "m2n2"]) == " (known: cmaes, m2n2)"
    assert did_you_mean("pso", []) == ""
    assert did_you_mean("lnag", ["math", "lang"], always_list=True) == " (did you mean 'lang'? known: math, lang)"
    assert did_you_mean("xyz", ["groups"], prefix="space.", label="known keys") == " (known keys: groups)"
    assert did_you_mean("group", ["groups"], prefix="space.") == " (did you mean 'space.groups'?)"


def test_show_value():
    assert [show_value(v) for v in (True, False, 1.0, 3, "x", [1, 2], None)] == [
        "true",
        "false",
        "1.0",
        "3",
        "'x'",
        "[1, 2]",
        "None",
    ]


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^a.yaml: not valid YAML \(line 2\): expected ',' or '\]', but got"):
        parse_yaml("a: [1\n", "a.yaml")
    with pytest.raises(RunDirError, match=r"^b.yaml: not valid YAML \(line 1\): mapping values are not allowed"):
        parse_yaml("a: b: c\n", "b.yaml", error=RunDirError)
    import yaml

    assert format_yaml_error(yaml.YAMLError("plain failure"), "c.yaml") == "c.yaml: not valid YAML: plain failure"
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\nb: [2, 3]\n")
    assert read_yaml(path) == {"a": 1, "b": [2, 3]}
    with pytest.raises(ConfigError) as info:
        read_yaml(tmp_path, what="run config")
    assert str(info.value) == f"{tmp_path}: cannot read run config (Is a directory)"
    with pytest.raises(ConfigError) as info:
        read_yaml(tmp_path / "none.yaml", what="recipe")
    assert str(info.value) == f"{tmp_path / 'none.yaml'}: cannot read recipe (No such file or directory)"
