"""environment.yml (for conda users on a cluster) pins exactly what pyproject.toml pins."""

import re
import tomllib

import yaml
from tests.support import REPO_ROOT

ROOT = REPO_ROOT
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)\s*$")


def _name(name: str) -> str:
    # PEP 503 normalisation: pyyaml, PyYAML and py_yaml name the same package
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(requirements) -> dict[str, str]:
    pins = {}
    for req in requirements:
        match = PIN.match(req)
        assert match, f"not an exact '==' pin: {req!r}"
        name = _name(match.group(1))
        assert name not in pins, f"{name} pinned twice"
        pins[name] = match.group(2)
    return pins


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return _pins(project["dependencies"] + project["optional-dependencies"]["test"])


def _environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _environment_pip() -> list[str]:
    blocks = [d["pip"] for d in _environment()["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(blocks) == 1, "environment.yml needs exactly one pip: section"
    return blocks[0]


def test_environment_header():
    env = _environment()
    assert env["name"] == "resnet-repro"
    assert env["channels"] == ["conda-forge"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda
    assert "pip" in conda


def test_pip_section_installs_the_project_itself():
    assert "-e ." in _environment_pip()


def test_pins_agree_both_ways():
    env_pins = _pins([r for r in _environment_pip() if r != "-e ."])
    project_pins = _pyproject_pins()
    only_env = sorted(set(env_pins) - set(project_pins))
    only_project = sorted(set(project_pins) - set(env_pins))
    assert not only_env, f"pinned in environment.yml but not in pyproject.toml: {only_env}"
    assert not only_project, f"pinned in pyproject.toml but not in environment.yml: {only_project}"
    differ = {n: (env_pins[n], project_pins[n]) for n in env_pins if env_pins[n] != project_pins[n]}
    assert not differ, f"versions differ (environment.yml, pyproject.toml): {differ}"


def test_install_script_installs_the_pinned_torch():
    # scripts/install.sh installs torch and torchvision first, by an explicit pip line: the same
    # versions as pyproject.toml pins, or the two install paths give different environments.
    script = (ROOT / "scripts" / "install.sh").read_text()
    lines = [line for line in script.splitlines() if "pip install" in line and "torch==" in line]
    assert len(lines) == 1, lines
    installed = dict(re.findall(r"\b(torch|torchvision)==([^\s\"']+)", lines[0]))
    project = _pyproject_pins()
    assert installed == {"torch": project["torch"], "torchvision": project["torchvision"]}


def test_the_running_environment_has_the_pinned_versions():
    # What the tests (and every number) run with is what the pins say: a venv that drifted from
    # pyproject.toml (a later `pip install -U`, another torch build) fails here.
    from importlib.metadata import PackageNotFoundError, version

    from packaging.specifiers import SpecifierSet

    drifted = {}
    for name, pinned in _pyproject_pins().items():
        try:
            found = version(name)
        except PackageNotFoundError:
            found = None
        # "==2.14.1" accepts a local build label such as 2.14.1+cu130, as pip does.
        if found is None or not SpecifierSet(f"=={pinned}").contains(found):
            drifted[name] = (pinned, found)
    assert not drifted, f"installed versions differ from pyproject.toml's pins (pinned, installed): {drifted}"
