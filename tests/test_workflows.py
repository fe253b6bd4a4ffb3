"""The GitHub workflows parse as YAML and follow the publishing design.

They cannot run here, so these tests check their structure: what triggers them, that
each step is a command the Makefile offers (so `make` exercises all but the deploy), how
the execution cache is keyed, and that the site the deploy uploads is the one
`make book` writes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(workflow, dict), f"{name} is not a YAML mapping"
    # YAML 1.1 reads the key `on` as the boolean True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def uses(workflow: dict, action: str) -> list[dict]:
    return [step for step in steps(workflow) if step.get("uses", "").split("@")[0] == action]


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {name for line in re.findall(r"^([\w .-]+):(?!=)", text, flags=re.MULTILINE) for name in line.split()}


@pytest.mark.parametrize("name", ["ci.yml", "publish.yml"])
def test_workflow_is_valid_yaml_with_jobs_and_steps(name):
    workflow = load(name)
    assert workflow["on"], f"{name} has no triggers"
    for job_name, job in workflow["jobs"].items():
        assert "runs-on" in job, f"{name}: job {job_name} has no runs-on"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), f"{name}: a step needs exactly one of uses/run: {step}"


@pytest.mark.parametrize("name", ["ci.yml", "publish.yml"])
def test_every_run_step_is_a_make_target_or_the_ci_script(name):
    targets = makefile_targets()
    for step in steps(load(name)):
        if "run" not in step:
            continue
        command = step["run"].strip()
        if command == "bash .ci/run":
            continue
        match = re.fullmatch(r"make ([\w-]+)(?: \w+=.*)?", command)
        assert match, f"{name}: step {step.get('name')!r} runs {command!r}, not a make target"
        assert match.group(1) in targets, f"{name}: `make {match.group(1)}` is not a target of the Makefile"


def test_ci_runs_the_ci_script_on_pushes_and_pull_requests():
    workflow = load("ci.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    assert any(step.get("run", "").strip() == "bash .ci/run" for step in steps(workflow))


def test_publish_runs_on_main_weekly_and_by_hand():
    triggers = load("publish.yml")["on"]
    assert triggers["push"]["branches"] == ["main"]
    assert triggers["schedule"][0]["cron"].split()[4] != "*", "the schedule should be weekly (a day of the week)"
    assert "workflow_dispatch" in triggers


def test_publish_builds_the_full_book_with_warnings_as_errors():
    runs = [step["run"] for step in steps(load("publish.yml")) if "run" in step]
    assert any(re.fullmatch(r'make book BOOKFLAGS="-W -n --keep-going"', run.strip()) for run in runs), runs


def test_the_execution_cache_is_keyed_on_notebooks_package_and_pyproject_and_skipped_weekly():
    workflow = load("publish.yml")
    caches = [step for step in uses(workflow, "actions/cache") if ".jupyter_cache" in step["with"]["path"]]
    assert len(caches) == 1, "publish.yml should cache the execution cache once"
    cache = caches[0]
    key = cache["with"]["key"]
    for pattern in ("'book/**/*.ipynb'", "'mmbook/**'", "'pyproject.toml'"):
        assert pattern in key, f"the execution cache key does not hash {pattern}: {key}"
    assert cache["with"]["path"] == "_build/full/_build/.jupyter_cache"
    # A restore key may drop the notebooks' hash, never the package's: a package change must re-execute.
    for restore_key in cache["with"].get("restore-keys", "").splitlines():
        assert "mmbook/**" in restore_key and "book/**/*.ipynb" not in restore_key
    assert cache.get("if") == "github.event_name != 'schedule'"


def test_the_full_book_folder_in_the_workflow_is_the_one_make_book_writes():
    dry = subprocess.run(["make", "-n", "-s", "book", "READY="], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "--path-output _build/full" in dry.stdout
    uploads = uses(load("publish.yml"), "actions/upload-pages-artifact")
    assert [step["with"]["path"] for step in uploads] == ["_build/full/_build/html"]


def test_linkcheck_may_fail_without_stopping_the_deploy():
    linkchecks = [step for step in steps(load("publish.yml")) if step.get("run", "").strip() == "make linkcheck"]
    assert len(linkchecks) == 1 and linkchecks[0].get("continue-on-error") is True


def test_deploy_uses_deploy_pages_under_the_pages_concurrency_group():
    workflow = load("publish.yml")
    assert workflow["concurrency"]["group"] == "pages"
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert [step["uses"].split("@")[0] for step in deploy["steps"]] == ["actions/deploy-pages"]


def test_publish_pins_the_notebooks_that_the_launch_buttons_open():
    workflow = load("publish.yml")
    build = workflow["jobs"]["build"]
    runs = [step.get("run", "").strip() for step in build["steps"]]
    book = runs.index('make book BOOKFLAGS="-W -n --keep-going"')
    assert runs.index("make launch-branch") < book, "the buttons' branch must be set before the build"
    (publish,) = [step for step in build["steps"] if step.get("run", "").startswith("make publish-notebooks")]
    assert build["steps"].index(publish) > book
    assert publish["run"].strip() == "make publish-notebooks REF=${{ github.sha }}"
    assert publish.get("if") == "github.ref == 'refs/heads/main'"
    assert build["permissions"] == {"contents": "write"}
