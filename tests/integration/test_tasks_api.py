"""`/api/v2/tasks` in-process: validation, the path jail, isolation, cancel and logs."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from argus.storage import task_dir
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}


def sft_yaml(name: str = "sft-smol", **extra: object) -> str:
    fields: dict[str, object] = {
        "name": name,
        "workload": "sft",
        "model_source": "$HOME/common/hf/tiny",
        "train_file": "$HOME/common/datasets/demo-chat/train.jsonl",
        "max_steps": 5,
        **extra,
    }
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in fields.items())


@pytest.fixture(autouse=True)
def dataset(api: Api) -> Path:
    path = api.storage_root / "datasets" / "demo-chat" / "train.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(CHAT) + "\n")
    return path


def post(api: Api, token: str, body: str):  # type: ignore[no-untyped-def]
    return api.client.post(
        "/api/v2/tasks",
        content=body.encode(),
        headers={**api.headers(token), "Content-Type": "application/yaml"},
    )


def test_submit_stores_the_resolved_spec_and_one_event(api: Api) -> None:
    alice = api.new_user("alice", commands=True)
    r = post(api, alice, sft_yaml(learning_rate=1))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["state"] == "QUEUED" and body["workload"] == "sft"
    assert body["task_id"].startswith("tsk_") and body["ray_job_id"] == f"argus-{body['task_id']}"
    assert body["checkpoint"] == {
        "model_source": f"$HOME/tasks/{body['task_id']}/checkpoint",
        "ready": False,
    }
    assert body["gpus_per_node"] == 0  # the CPU engine's default
    detail = api.client.get(f"/api/v2/tasks/{body['task_id']}", headers=api.headers(alice)).json()
    assert [e["event_type"] for e in reversed(detail["events"])] == ["CREATED"]
    resolved = detail["resolved_spec_yaml"]
    assert f"model_source: {api.storage_root}/hf/tiny" in resolved
    assert "learning_rate: 1.0" in resolved and "batch_size: 4" in resolved
    assert detail["ray_job"] is None


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ("name: x\nworkload: sft\nbogus: 1\n", 422, "bogus", "unknown field"),
        ("name: x\nworkload: train\n", 422, "workload", "sft"),
        ("name: x\nworkload: sft\n", 422, "model_source", "required for workload sft"),
        ("name: x\nworkload: command\n", 422, "entrypoint", "required for workload command"),
        ("name: x\nworkload: command\nentrypoint: ls\nmax_steps: 3\n", 422, "max_steps", "sft"),
        ("name: x\nworkload: command\nentrypoint: ls\nnnodes: 2\n", 422, "nnodes", "only 1"),
        (
            "name: x\nworkload: command\nentrypoint: ls\ngpus_per_node: -1\n",
            422,
            "gpus_per_node",
            "at least 0",
        ),
        (
            "name: x\nworkload: command\nentrypoint: ls\ncpus_per_node: '2'\n",
            422,
            "cpus_per_node",
            "whole number",
        ),
        (
            "name: x\nworkload: command\nentrypoint: ls\nenv: {RAY_ADDRESS: x}\n",
            422,
            "env.RAY_ADDRESS",
            "argus sets",
        ),
        ("name: ../x\nworkload: command\nentrypoint: ls\n", 422, "name", "not valid"),
        (sft_yaml(train_file="/etc/passwd"), 403, "train_file", "outside"),
        (
            sft_yaml(train_file="$HOME/common/datasets/none.jsonl"),
            422,
            "train_file",
            "does not exist",
        ),
        (sft_yaml(model_source="$HOME/common/hf"), 422, "model_source", "config.json"),
        (sft_yaml(model_source="/etc"), 403, "model_source", "outside"),
        (
            "name: x\nworkload: command\nentrypoint: ls\nworking_dir: $HOME/common/hf\n",
            403,
            "working_dir",
            "outside",
        ),
    ],
)
def test_bad_specs_say_what_to_fix(
    api: Api, body: str, status: int, field: str, words: str
) -> None:
    alice = api.new_user("alice", commands=True)
    r = post(api, alice, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert any(d["field"] == field and words in d["message"] for d in err["details"]), err
    assert api.client.get("/api/v2/tasks", headers=api.headers(alice)).json()["total"] == 0


def test_syntax_and_media_type_errors(api: Api) -> None:
    alice = api.new_user("alice", commands=True)
    assert post(api, alice, "name: [x\n").status_code == 400
    assert post(api, alice, "name: a\nname: b\n").status_code == 400
    r = api.client.post("/api/v2/tasks", json={"name": "x"}, headers=api.headers(alice))
    assert r.status_code == 415


def test_another_users_task_is_404_and_lists_are_own(api: Api) -> None:
    alice, bob = api.new_user("alice", commands=True), api.new_user("bob", commands=True)
    task_id = post(api, alice, sft_yaml()).json()["task_id"]
    post(api, bob, sft_yaml("bobs"))
    for path in (f"/api/v2/tasks/{task_id}", f"/api/v2/tasks/{task_id}/logs"):
        assert api.client.get(path, headers=api.headers(bob)).status_code == 404
    r = api.client.post(f"/api/v2/tasks/{task_id}:cancel", headers=api.headers(bob))
    assert r.status_code == 404
    mine = api.client.get("/api/v2/tasks", headers=api.headers(bob)).json()
    assert [t["name"] for t in mine["items"]] == ["bobs"]
    everyone = api.client.get("/api/v2/tasks", headers=api.headers()).json()
    assert everyone["total"] == 2


def test_list_is_paginated_newest_first_and_filters_by_state(api: Api) -> None:
    alice = api.new_user("alice", commands=True)
    ids = []
    for i in range(3):
        ids.append(post(api, alice, sft_yaml(f"t{i}")).json()["task_id"])
        api.clock.advance(seconds=1)
    page = api.client.get("/api/v2/tasks?limit=2&offset=1", headers=api.headers(alice)).json()
    assert page["total"] == 3 and [t["task_id"] for t in page["items"]] == [ids[1], ids[0]]
    api.client.post(f"/api/v2/tasks/{ids[0]}:cancel", headers=api.headers(alice))
    only = api.client.get("/api/v2/tasks?state=CANCELED", headers=api.headers(alice)).json()
    assert [t["task_id"] for t in only["items"]] == [ids[0]]
    bad = api.client.get("/api/v2/tasks?state=DONE", headers=api.headers(alice))
    assert bad.status_code == 422


def test_cancel_a_queued_task_at_once_and_a_finished_one_is_409(api: Api) -> None:
    alice = api.new_user("alice", commands=True)
    task_id = post(api, alice, sft_yaml()).json()["task_id"]
    r = api.client.post(f"/api/v2/tasks/{task_id}:cancel", headers=api.headers(alice))
    assert r.status_code == 202 and r.json()["state"] == "CANCELED"
    assert r.json()["finished_at"] is not None
    again = api.client.post(f"/api/v2/tasks/{task_id}:cancel", headers=api.headers(alice))
    assert again.status_code == 409 and "already CANCELED" in again.json()["error"]["message"]


def test_active_tasks_per_user_are_bounded(api: Api) -> None:
    api.ctx.tasks = dataclasses.replace(api.ctx.tasks, max_active_per_user=2)
    alice = api.new_user("alice", commands=True)
    assert post(api, alice, sft_yaml("a")).status_code == 202
    assert post(api, alice, sft_yaml("b")).status_code == 202
    r = post(api, alice, sft_yaml("c"))
    assert r.status_code == 409 and "2 tasks queued or running" in r.json()["error"]["message"]


def test_logs_tail_and_refuse_a_symlink_out_of_the_home(api: Api, tmp_path: Path) -> None:
    alice = api.new_user("alice", commands=True)
    task_id = post(api, alice, sft_yaml()).json()["task_id"]
    url = f"/api/v2/tasks/{task_id}/logs"
    assert api.client.get(url, headers=api.headers(alice)).text == ""
    folder = task_dir(api.storage_root, "alice", task_id)
    folder.mkdir(parents=True)
    (folder / "task.log").write_text("".join(f"line {i}\n" for i in range(500)))
    r = api.client.get(url, params={"tail": 3}, headers=api.headers(alice))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text == "line 497\nline 498\nline 499\n"
    assert len(api.client.get(url, headers=api.headers(alice)).text.splitlines()) == 200
    # A user who points their task's log at a file outside their home reads nothing.
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours\n")
    (folder / "task.log").unlink()
    os.symlink(secret, folder / "task.log")
    assert api.client.get(url, headers=api.headers(alice)).text == ""


def test_follow_streams_until_the_task_finishes(api: Api) -> None:
    alice = api.new_user("alice", commands=True)
    task_id = post(api, alice, sft_yaml()).json()["task_id"]
    folder = task_dir(api.storage_root, "alice", task_id)
    folder.mkdir(parents=True)
    (folder / "task.log").write_text("step 1\n")
    # The task ends (cancelled while QUEUED): the stream sends what there is and closes.
    api.client.post(f"/api/v2/tasks/{task_id}:cancel", headers=api.headers(alice))
    with api.client.stream(
        "GET", f"/api/v2/tasks/{task_id}/logs?follow=true", headers=api.headers(alice)
    ) as r:
        assert r.status_code == 200
        assert b"".join(r.iter_bytes()) == b"step 1\n"


def test_a_tasks_events_are_paged_too(api: Api) -> None:
    alice = api.new_user("alice", commands=True)
    r = api.client.post(
        "/api/v2/tasks",
        content=b"name: t\nworkload: command\nentrypoint: x\n",
        headers={**api.headers(alice), "Content-Type": "application/yaml"},
    )
    task_id = r.json()["task_id"]
    api.client.post(f"/api/v2/tasks/{task_id}:cancel", headers=api.headers(alice))
    page = api.client.get(
        f"/api/v2/tasks/{task_id}/events", params={"limit": 1}, headers=api.headers(alice)
    ).json()
    assert [e["event_type"] for e in page["items"]] == ["CANCELED"] and page["total"] == 2
    rest = api.client.get(
        f"/api/v2/tasks/{task_id}/events",
        params={"before": page["next_before"]},
        headers=api.headers(alice),
    ).json()
    assert [e["event_type"] for e in rest["items"]] == ["CREATED"] and rest["next_before"] is None
