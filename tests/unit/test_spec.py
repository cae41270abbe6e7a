"""devenv.yaml loading: the model, located issues (line, column, field), aggregation and the JSON Schema."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from devenv.errors import SpecInvalid, SpecIssue
from devenv.spec import (
    SPEC_FILENAME,
    GpuRequest,
    Spec,
    load_spec,
    load_spec_text,
    spec_json_schema,
)
from devenv.spec.loader import issues_from_validation_error

FULL_SPEC = """\
name: vision-lab
template: pytorch
python: "3.11"
requirements:
  - requirements.in
  - requirements-dev.in
apt: [libgl1, ffmpeg, g++]
setup:
  - pip config set global.timeout 60
resources:
  gpu: A100:2
  cpu: 8
  memory: 64Gi
  disk: 200G
backend: gpu-box
repo:
  url: git@github.com:team/vision.git
  ref: main
data:
  remote: s3-cache
  paths: [data/raw, data/labels]
tracking:
  wandb:
    project: vision
    entity: team
secrets: [WANDB_API_KEY, GIT_TOKEN]
ports: [8080, 6006]
jupyter: false
ssh: true
autostop: 1h30m
env:
  OMP_NUM_THREADS: 4
  DEBUG: true
  RATIO: 0.50
  MODE: "fast"
ci:
  test: pytest -q
promote:
  entrypoint: python -m vision.serve --port 8080
  strip: [jupyterlab]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder holding the requirement files the specs below name."""
    (tmp_path / "requirements.in").write_text("numpy\n")
    (tmp_path / "requirements-dev.in").write_text("pytest\n")
    return tmp_path


def load(text: str, base: Path) -> Spec:
    return load_spec_text(textwrap.dedent(text), SPEC_FILENAME, base)


def issues(text: str, base: Path) -> list[SpecIssue]:
    with pytest.raises(SpecInvalid) as caught:
        load(text, base)
    return caught.value.issues


def only_issue(text: str, base: Path) -> SpecIssue:
    found = issues(text, base)
    assert len(found) == 1, [issue.render() for issue in found]
    return found[0]


# ---- valid specs ----


def test_full_spec_with_every_field(project: Path) -> None:
    spec = load(FULL_SPEC, project)
    assert spec.name == "vision-lab"
    assert spec.template == "pytorch"
    assert spec.python == "3.11"
    assert spec.requirements == ["requirements.in", "requirements-dev.in"]
    assert spec.apt == ["libgl1", "ffmpeg", "g++"]
    assert spec.setup == ["pip config set global.timeout 60"]
    assert spec.resources.gpu == GpuRequest(type="A100", count=2)
    assert spec.resources.cpu == 8.0
    assert spec.resources.memory == 64 * 2**30
    assert spec.resources.disk == 200 * 10**9
    assert spec.backend == "gpu-box"
    assert spec.repo is not None and spec.repo.url == "git@github.com:team/vision.git" and spec.repo.ref == "main"
    assert spec.data is not None and spec.data.remote == "s3-cache" and spec.data.paths == ["data/raw", "data/labels"]
    assert spec.tracking is not None and spec.tracking.wandb is not None
    assert (spec.tracking.wandb.project, spec.tracking.wandb.entity) == ("vision", "team")
    assert spec.secrets == ["WANDB_API_KEY", "GIT_TOKEN"]
    assert spec.ports == [8080, 6006]
    assert spec.jupyter is False and spec.ssh is True
    assert spec.autostop == 5400
    assert spec.env == {"OMP_NUM_THREADS": "4", "DEBUG": "true", "RATIO": "0.50", "MODE": "fast"}
    assert spec.ci is not None and spec.ci.test == "pytest -q"
    assert spec.promote is not None
    assert spec.promote.entrypoint == ["python", "-m", "vision.serve", "--port", "8080"]
    assert spec.promote.strip == ["jupyterlab"]


def test_minimal_spec_gets_the_defaults(project: Path) -> None:
    spec = load("name: demo\n", project)
    assert spec.python == "3.11"
    assert spec.requirements == ["requirements.in"]
    assert spec.backend == "local"
    assert spec.jupyter is True and spec.ssh is True
    assert spec.autostop is None and spec.resources.gpu is None
    assert spec.apt == [] and spec.env == {} and spec.ports == []


def test_dump_round_trips_through_validate(project: Path) -> None:
    spec = load(FULL_SPEC, project)
    dumped = spec.model_dump(mode="json")
    assert dumped["resources"]["gpu"] == "A100:2"
    assert dumped["autostop"] == 5400 and dumped["resources"]["memory"] == 64 * 2**30
    assert json.loads(json.dumps(dumped)) == dumped
    assert Spec.model_validate(dumped) == spec


def test_dump_round_trips_a_count_only_gpu() -> None:
    spec = Spec.model_validate({"name": "x", "resources": {"gpu": 2}})
    assert spec.model_dump(mode="json")["resources"]["gpu"] == "2"
    assert Spec.model_validate(spec.model_dump(mode="json")) == spec


def test_load_spec_reads_a_file_and_a_folder(project: Path) -> None:
    (project / SPEC_FILENAME).write_text("name: from-file\n")
    assert load_spec(project / SPEC_FILENAME).name == "from-file"
    assert load_spec(project).name == "from-file"


@pytest.mark.parametrize(
    ("text", "expected"), [("3.11", "3.11"), ("3.9", "3.9"), ('"3.10"', "3.10"), ("'3.12'", "3.12")]
)
def test_python_version_as_float_or_string(project: Path, text: str, expected: str) -> None:
    assert load(f"name: x\npython: {text}\n", project).python == expected


def test_python_310_unquoted_is_ambiguous(project: Path) -> None:
    issue = only_issue("name: x\npython: 3.10\n", project)
    assert (issue.line, issue.column, issue.field) == (2, 9, "python")
    assert "3.10" in issue.message
    assert issue.hint == 'quote it: python: "3.10"'


def test_python_integer_is_rejected(project: Path) -> None:
    issue = only_issue("name: x\npython: 3\n", project)
    assert (issue.line, issue.column, issue.field) == (2, 9, "python")
    assert "MAJOR.MINOR" in issue.message


def test_env_values_keep_their_yaml_text(project: Path) -> None:
    spec = load("name: x\nenv:\n  A: 1\n  B: yes\n  C: 0123\n  D: 1.50\n  E: '007'\n  F: false\n", project)
    assert spec.env == {"A": "1", "B": "yes", "C": "0123", "D": "1.50", "E": "007", "F": "false"}


def test_env_values_are_coerced_without_the_loader() -> None:
    spec = Spec.model_validate({"name": "x", "env": {"A": 1, "B": True, "C": 2.5}})
    assert spec.env == {"A": "1", "B": "true", "C": "2.5"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("off", None),
        ("null", None),
        ("false", None),
        ('"off"', None),
        ("30m", 1800),
        ("45s", 45),
        ("2h", 7200),
    ],
)
def test_autostop_forms(project: Path, text: str, expected: int | None) -> None:
    assert load(f"name: x\nautostop: {text}\n", project).autostop == expected


def test_autostop_zero_suggests_off(project: Path) -> None:
    issue = only_issue("name: x\nautostop: 0\n", project)
    assert (issue.line, issue.column, issue.field) == (2, 11, "autostop")
    assert issue.hint == 'write "off" to disable autostop'


def test_promote_entrypoint_list_is_kept(project: Path) -> None:
    spec = load("name: x\npromote:\n  entrypoint: [python, -c, 'print(1)']\n", project)
    assert spec.promote is not None and spec.promote.entrypoint == ["python", "-c", "print(1)"]


def test_empty_requirements_needs_no_file(tmp_path: Path) -> None:
    assert load("name: x\nrequirements: []\n", tmp_path).requirements == []


# ---- located issues, one kind at a time ----


def test_yaml_syntax_error_is_located(project: Path) -> None:
    issue = only_issue("name: x\nports: [80, 81\npython: '3.11'\n", project)
    assert issue.field == ""
    assert (issue.line, issue.column) == (3, 7)
    assert issue.message.startswith("YAML syntax:")


def test_yaml_bad_indentation_is_located(project: Path) -> None:
    issue = only_issue("name: x\nresources:\n  gpu: 1\n cpu: 2\n", project)
    assert (issue.line, issue.column) == (4, 2)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_spec_is_one_issue(project: Path, text: str) -> None:
    issue = only_issue(text, project)
    assert issue.message == "the spec is empty"
    assert issue.hint is not None and "devenv init" in issue.hint


@pytest.mark.parametrize(("text", "got"), [("- name: x\n", "a list"), ("just a string\n", "a single value")])
def test_top_level_must_be_a_mapping(project: Path, text: str, got: str) -> None:
    issue = only_issue(text, project)
    assert (issue.line, issue.column, issue.field) == (1, 1, "")
    assert issue.message.endswith(f"got {got}")


def test_unknown_top_level_key_is_located_at_the_key(project: Path) -> None:
    issue = only_issue("name: x\npyhton: '3.11'\n", project)
    assert (issue.line, issue.column, issue.field) == (2, 1, "pyhton")
    assert issue.message == "unknown field 'pyhton'"
    assert issue.hint == "did you mean 'python'?"


def test_did_you_mean_at_a_nested_level(project: Path) -> None:
    issue = only_issue("name: x\nresources: {gpus: 1}\n", project)
    assert (issue.line, issue.column, issue.field) == (2, 13, "resources.gpus")
    assert issue.hint == "did you mean 'gpu'?"


def test_did_you_mean_two_levels_down(project: Path) -> None:
    issue = only_issue("name: x\ntracking:\n  wandb:\n    project: p\n    entitty: e\n", project)
    assert (issue.line, issue.column, issue.field) == (5, 5, "tracking.wandb.entitty")
    assert issue.hint == "did you mean 'entity'?"


def test_unknown_key_without_a_close_match_lists_the_fields(project: Path) -> None:
    issue = only_issue("name: x\nrepo:\n  url: u\n  zzzzzz: 1\n", project)
    assert issue.field == "repo.zzzzzz"
    assert issue.hint == "known fields: url, ref, path, token_secret, username"


def test_wrong_type_is_located_at_the_value(project: Path) -> None:
    issue = only_issue("name: x\nports:   'not a list'\n", project)
    assert (issue.line, issue.column, issue.field) == (2, 10, "ports")
    assert issue.message == "expected a list, got a string"


def test_wrong_type_in_a_list_item(project: Path) -> None:
    issue = only_issue("name: x\napt:\n  - curl\n  - {a: 1}\n", project)
    assert (issue.line, issue.column, issue.field) == (4, 5, "apt[1]")
    assert issue.message == "expected a string, got a mapping"


def test_number_where_a_string_is_needed_suggests_quoting_the_text(project: Path) -> None:
    issue = only_issue("name: x\nrepo:\n  url: u\n  ref: 1.10\n", project)
    assert (issue.line, issue.column, issue.field) == (4, 8, "repo.ref")
    assert issue.message == "expected a string, got a number"
    assert issue.hint == 'quote it: "1.10"'


def test_empty_value_for_a_list_or_mapping_says_what_to_write(project: Path) -> None:
    found = issues("name: x\napt:\nresources:\n", project)
    assert [(i.line, i.field, i.message, i.hint) for i in found] == [
        (2, "apt", "expected a list, got nothing (null)", "write [] for none"),
        (3, "resources", "expected a mapping, got nothing (null)", "remove the line to use the defaults"),
    ]


def test_validation_issues_without_yaml_are_unlocated() -> None:
    with pytest.raises(ValidationError) as caught:
        Spec.model_validate({"name": "x", "resources": {"gpu": "A100:0"}, "ports": [1, 1]})
    found = issues_from_validation_error(caught.value, "data")
    assert [(i.line, i.field) for i in found] == [(None, "resources.gpu"), (None, "ports[1]")]


def test_flag_must_be_a_bool(project: Path) -> None:
    issue = only_issue("name: x\njupyter: 'yes'\n", project)
    assert (issue.line, issue.column, issue.field) == (2, 10, "jupyter")
    assert issue.message == "expected true or false, got a string"


def test_bad_gpu_string_is_located_at_the_value(project: Path) -> None:
    issue = only_issue("name: x\nresources:\n  gpu: 'A100:zero'\n", project)
    assert (issue.line, issue.column, issue.field) == (3, 8, "resources.gpu")
    assert 'like "A100:2"' in issue.message
    assert "Value error" not in issue.message


def test_gpu_as_a_mapping_reports_its_inner_field(project: Path) -> None:
    issue = only_issue("name: x\nresources:\n  gpu: {type: A100, count: 0}\n", project)
    assert (issue.line, issue.column, issue.field) == (3, 28, "resources.gpu.count")
    assert "greater than or equal to 1" in issue.message


def test_bad_duration_is_located_at_the_value(project: Path) -> None:
    issue = only_issue("name: x\nautostop: soon\n", project)
    assert (issue.line, issue.column, issue.field) == (2, 11, "autostop")
    assert 'expected a duration like "30m"' in issue.message


def test_bad_size_is_located_at_the_value(project: Path) -> None:
    issue = only_issue("name: x\nresources:\n  memory: 16 gigs\n", project)
    assert (issue.line, issue.column, issue.field) == (3, 11, "resources.memory")
    assert 'expected a size like "16Gi"' in issue.message


def test_bad_name_says_why_and_suggests_a_slug(project: Path) -> None:
    issue = only_issue("name: My_Project\n", project)
    assert (issue.line, issue.column, issue.field) == (1, 7, "name")
    assert issue.hint is not None
    assert "Docker image name" in issue.hint and "'my-project'" in issue.hint


def test_missing_required_field_is_located_at_the_parent_mapping(project: Path) -> None:
    issue = only_issue("# comment\n\npython: '3.11'\n", project)
    assert (issue.line, issue.column, issue.field) == (3, 1, "name")
    assert issue.message == "missing required field 'name'"


def test_missing_nested_field_is_located_at_its_mapping(project: Path) -> None:
    issue = only_issue("name: x\ndata:\n    paths: [a]\n", project)
    assert (issue.line, issue.column, issue.field) == (3, 5, "data.remote")
    assert issue.message == "missing required field 'remote'"


def test_typo_in_nested_key_reports_unknown_and_missing(project: Path) -> None:
    found = issues("name: x\nci:\n  tset: pytest\n", project)
    assert {(i.line, i.column, i.field, i.message) for i in found} == {
        (3, 3, "ci.test", "missing required field 'test'"),
        (3, 3, "ci.tset", "unknown field 'tset'"),
    }
    assert next(i for i in found if i.field == "ci.tset").hint == "did you mean 'test'?"


def test_missing_requirements_file_is_located_at_the_item(project: Path) -> None:
    issue = only_issue("name: x\nrequirements:\n  - requirements.in\n  - extra.in\n", project)
    assert (issue.line, issue.column, issue.field) == (4, 5, "requirements[1]")
    assert "'extra.in'" in issue.message
    assert issue.hint == "create it, or remove it from requirements"


def test_requirements_directory_is_not_a_file(project: Path) -> None:
    (project / "reqs").mkdir()
    issue = only_issue("name: x\nrequirements: [reqs]\n", project)
    assert issue.field == "requirements[0]" and "is a directory" in issue.message


def test_missing_default_requirements_file(tmp_path: Path) -> None:
    issue = only_issue("name: x\n", tmp_path)
    assert issue.field == "requirements"
    assert "requirements.in" in issue.message
    assert issue.hint is not None and "requirements: []" in issue.hint


def test_duplicate_keys_are_reported(project: Path) -> None:
    issue = only_issue("name: x\npython: '3.10'\nname: y\n", project)
    assert (issue.line, issue.column, issue.field) == (3, 1, "name")
    assert issue.message == "duplicate field 'name' (first at line 1)"


def test_duplicate_nested_keys_are_reported(project: Path) -> None:
    issue = only_issue("name: x\nenv:\n  A: '1'\n  B: '2'\n  A: '3'\n", project)
    assert (issue.line, issue.column, issue.field) == (5, 3, "env.A")


def test_merge_keys_are_not_duplicates(project: Path) -> None:
    spec = load("name: x\nenv:\n  <<: {A: '1', B: '2'}\n  B: '3'\n", project)
    assert spec.env == {"A": "1", "B": "3"}


def test_error_inside_merged_values_is_still_located(project: Path) -> None:
    issue = only_issue("name: x\nenv:\n  <<: {A: '1', b-b: '2'}\n", project)
    assert (issue.line, issue.column, issue.field) == (3, 16, "env.b-b")


def test_duplicate_port_is_located_at_the_second_one(project: Path) -> None:
    issue = only_issue("name: x\nports: [80, 443, 80]\n", project)
    assert (issue.line, issue.column, issue.field) == (2, 18, "ports[2]")
    assert issue.message == "port 80 is listed twice"


def test_port_out_of_range_and_bool(project: Path) -> None:
    found = issues("name: x\nports:\n  - 0\n  - true\n  - 70000\n", project)
    assert [(i.line, i.field) for i in found] == [(3, "ports[0]"), (4, "ports[1]"), (5, "ports[2]")]


def test_secret_with_a_value_never_echoes_the_value(project: Path) -> None:
    issue = only_issue("name: x\nsecrets:\n  - WANDB_API_KEY=s3cr3t\n", project)
    assert (issue.line, issue.column, issue.field) == (3, 5, "secrets[0]")
    assert "s3cr3t" not in issue.render()
    assert issue.hint == "list only secret names; set values with `devenv secret set NAME`"


def test_bad_apt_and_env_key(project: Path) -> None:
    found = issues("name: x\napt: [Curl]\nenv:\n  bad-key: v\n", project)
    assert [(i.line, i.column, i.field) for i in found] == [(2, 7, "apt[0]"), (4, 3, "env.bad-key")]


def test_unknown_yaml_tag_becomes_an_issue(project: Path) -> None:
    issue = only_issue("name: x\nsetup: !!python/object:os.system [ls]\n", project)
    assert issue.line == 2
    assert "constructor" in issue.message


def test_undefined_alias_becomes_an_issue(project: Path) -> None:
    issue = only_issue("name: x\nsetup: *nowhere\n", project)
    assert (issue.line, issue.column) == (2, 8)


def test_several_documents_are_one_issue(project: Path) -> None:
    issue = only_issue("name: x\n---\nname: y\n", project)
    assert issue.line == 2 and "single document" in issue.message


def test_control_character_is_located(project: Path) -> None:
    issue = only_issue("name: x\nsetup: [\x07]\n", project)
    assert (issue.line, issue.column) == (2, 9)


# ---- aggregation and rendering ----


def test_every_issue_is_reported_at_once_in_file_order(project: Path) -> None:
    text = """\
    name: Bad Name
    pyhton: '3.11'
    requirements: [requirements.in, nope.in]
    resources:
      gpu: A100:0
      memroy: 16Gi
    autostop: whenever
    secrets: [TOKEN=abc]
    ports: [80, 80]
    """
    found = issues(text, project)
    assert [(i.line, i.field) for i in found] == [
        (1, "name"),
        (2, "pyhton"),
        (3, "requirements[1]"),
        (5, "resources.gpu"),
        (6, "resources.memroy"),
        (7, "autostop"),
        (8, "secrets[0]"),
        (9, "ports[1]"),
    ]
    with pytest.raises(SpecInvalid) as caught:
        load(text, project)
    assert str(caught.value) == "8 problems in devenv.yaml"
    assert len(caught.value.render().splitlines()) == 8


def test_messages_are_short_and_free_of_pydantic_noise(project: Path) -> None:
    text = "name: 1\nports: x\njupyter: 2\nresources: {cpu: -1, disk: []}\nrepo: 5\n"
    for issue in issues(text, project):
        assert "pydantic" not in issue.render().lower()
        assert "Value error" not in issue.message and "Input should" not in issue.message
        assert "\n" not in issue.render()


def test_issue_render_format(project: Path) -> None:
    issue = only_issue("name: x\nresources: {gpus: 1}\n", project)
    assert issue.render() == "devenv.yaml:2:13: resources.gpus: unknown field 'gpus' (hint: did you mean 'gpu'?)"
    bare = SpecIssue(file="devenv.yaml", line=None, column=None, field="", message="broken")
    assert bare.render() == "devenv.yaml: broken"


def test_missing_file_names_the_path_and_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / SPEC_FILENAME
    with pytest.raises(SpecInvalid) as caught:
        load_spec(path)
    (issue,) = caught.value.issues
    assert str(path) in issue.message and issue.file == str(path)
    assert issue.hint == "run `devenv init --template minimal` to create one"


def test_file_path_is_reported_as_given(project: Path) -> None:
    path = project / SPEC_FILENAME
    path.write_text("name: x\nports: [0]\n")
    with pytest.raises(SpecInvalid) as caught:
        load_spec(path)
    assert caught.value.issues[0].file == str(path)
    assert caught.value.render().startswith(f"{path}:2:")


def test_non_utf8_file_is_an_issue(project: Path) -> None:
    path = project / SPEC_FILENAME
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecInvalid, match=r"1 problem in .*devenv\.yaml"):
        load_spec(path)


@pytest.mark.parametrize(
    "text",
    [
        "name: [",
        "name: x\nresources: 5\n",
        "name: x\nresources: [1, 2]\n",
        "name: x\nenv: [A]\n",
        "name: x\nenv: {1: 2}\n",
        "name: x\nenv: {[a]: 1}\n",
        "name: x\nrequirements: 7\n",
        "name: x\nrequirements: [~, 3, '']\n",
        "name: x\npromote: {entrypoint: []}\n",
        "name: x\ntracking: {wandb: 3}\n",
        "? [a]\n: 1\n",
        "name: x\nrequirements: ['a\\x00b']\n",
        "[" * 2000,
        "name: x\npython: .nan\n",
        "name: x\nresources: {gpu: {type: A100, count: 1, extra: 2}}\n",
        "&a [*a]\n",
    ],
)
def test_malformed_input_only_ever_raises_spec_invalid(project: Path, text: str) -> None:
    with pytest.raises(SpecInvalid) as caught:
        load_spec_text(text, SPEC_FILENAME, project)
    assert caught.value.issues
    assert all(issue.render().startswith(SPEC_FILENAME) for issue in caught.value.issues)


# ---- JSON Schema ----


def test_schema_has_every_field_and_is_json() -> None:
    schema = spec_json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["title"] == "devenv.yaml"
    assert set(Spec.model_fields) <= set(schema["properties"])
    assert schema["required"] == ["name"]
    assert schema["additionalProperties"] is False
    assert json.loads(json.dumps(schema)) == schema


def test_schema_accepts_the_human_forms() -> None:
    schema = spec_json_schema()
    resources = schema["$defs"]["Resources"]["properties"]
    assert {"type": "string"} in resources["gpu"]["anyOf"]
    assert {"type": "string"} in resources["memory"]["anyOf"]
    assert {"type": "string"} in schema["properties"]["autostop"]["anyOf"]
    assert all(d.get("additionalProperties") is False for d in schema["$defs"].values())


# ---- hooks: time limits and background steps ----


def test_hooks_timeout_and_a_background_start_step(project: Path) -> None:
    spec = load('name: x\nhooks:\n  timeout: 20m\n  start:\n    - background: "streamlit run app.py"\n', project)
    assert spec.hooks.timeout == 1200 and spec.hooks.start == [{"background": "streamlit run app.py"}]
    assert load("name: x\nhooks:\n  start: [make]\n", project).hooks.timeout is None  # the per-phase defaults
    assert Spec.model_validate(spec.model_dump()).hooks.timeout == 1200  # dumped as seconds, read back


@pytest.mark.parametrize("text", ["soon", "0", "true", "[1]"])
def test_a_bad_hooks_timeout_is_located(project: Path, text: str) -> None:
    issue = only_issue(f"name: x\nhooks:\n  timeout: {text}\n  start: [make]\n", project)
    assert (issue.line, issue.field) == (3, "hooks.timeout")
    assert issue.render().startswith(f"{SPEC_FILENAME}:3:") and "background" in (issue.hint or "")


def test_a_background_step_is_alone_and_only_in_start(project: Path) -> None:
    mixed = only_issue("name: x\nhooks:\n  start:\n    - background: serve\n      other: make\n", project)
    assert mixed.line == 4 and mixed.field.startswith("hooks.start") and "single key" in mixed.message
    empty = only_issue('name: x\nhooks:\n  start:\n    - background: " "\n', project)
    assert empty.line == 4 and "non-empty" in empty.message
    created = only_issue("name: x\nhooks:\n  create:\n    - background: serve\n", project)
    assert created.line == 4 and created.field.startswith("hooks.create")
    assert created.hint == "move the step to hooks.start"
