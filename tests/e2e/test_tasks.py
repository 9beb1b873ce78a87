"""Training tasks for real: Ray jobs on the shared cluster, argus's sft workload on the demo
model, the checkpoint served by Ray Serve LLM and answered through the `openai` client.
A task running through an argus restart is in test_serving.py's restart test (one restart
shows the model and the task).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from argus.demo import DEMO_TASK_YAML
from tests.e2e.conftest import Stack, argus

pytestmark = pytest.mark.e2e


def events(got: dict[str, Any]) -> list[str]:
    return [e["event_type"] for e in reversed(got["events"])]


def test_the_demo_sft_task_trains_and_its_checkpoint_serves(stack: Stack) -> None:
    posted = stack.post_task(DEMO_TASK_YAML.replace("max_steps: 20", "max_steps: 6"))
    task_id = posted["task_id"]
    # Follow the log as it is written; the stream closes when the task has finished.
    with httpx.stream(
        "GET",
        f"{stack.api_url}/api/v2/tasks/{task_id}/logs",
        params={"follow": True},
        headers={"Authorization": f"Bearer {stack.token}"},
        timeout=httpx.Timeout(30, read=600),
    ) as r:
        assert r.status_code == 200
        log = "".join(r.iter_text())
    got = stack.task(task_id)
    assert got["task"]["state"] == "SUCCEEDED", (got["task"], log[-3000:])
    assert events(got) == ["CREATED", "SUBMITTED", "STARTED", "SUCCEEDED"]
    assert "argus-sft: step 6/6" in log and "the command exited with code 0" in log
    assert got["ray_job"]["status"] == "SUCCEEDED"
    checkpoint = got["task"]["checkpoint"]
    assert checkpoint == {"model_source": f"$HOME/tasks/{task_id}/checkpoint", "ready": True}
    folder = stack.storage / "users" / "alice" / "tasks" / task_id / "checkpoint"
    assert (folder / "model.safetensors").is_file() and (folder / "argus_training.json").is_file()

    # Train -> serve: the checkpoint is a model_source as it stands.
    model = stack.post_spec(
        f"model_id: sft-smol\nmodel_source: {checkpoint['model_source']}\n"
        "engine_kwargs:\n  max_model_len: 1024\n"
    )
    stack.wait(model["model_key"], "RUNNING", timeout=600)
    reply = stack.openai().chat.completions.create(
        model=model["model_id"],
        temperature=0,
        max_tokens=16,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert (reply.choices[0].message.content or "").strip()
    assert stack.call("DELETE", f"/api/v2/serve/models/{model['model_key']}").status_code == 202
    stack.wait(model["model_key"], "DELETED", timeout=300)


def test_a_failing_task_says_why_and_the_cli_exits_non_zero(stack: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: bad-data\nworkload: command\nentrypoint: >-\n"
        "  echo reading train.jsonl;\n"
        "  echo 'ValueError: train.jsonl line 3 is not JSON' >&2;\n"
        "  exit 3\n"
    )
    env = {**stack.env, "ARGUS_TOKEN": stack.token}
    done = argus(env, "task", "submit", "-f", str(spec), "--follow", timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "reading train.jsonl" in done.stdout
    assert "FAILED" in done.stderr and "line 3 is not JSON" in done.stderr
    listed = argus(env, "task", "ls")
    assert "bad-data" in listed.stdout and "FAILED" in listed.stdout
    task_id = next(ln.split()[0] for ln in listed.stdout.splitlines() if "bad-data" in ln)
    got = stack.task(task_id)["task"]
    assert "exit code 3" in got["error_summary"]
    assert "ValueError: train.jsonl line 3 is not JSON" in got["error_summary"]
