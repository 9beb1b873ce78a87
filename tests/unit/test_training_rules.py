"""The training tasks' pure rules: the spec, the state machine, the scheduler's decision."""

from __future__ import annotations

from pathlib import Path

import pytest

from argus.cluster.job_client import JobInfo, JobStatus
from argus.cluster.serve_app import EngineMode
from argus.training.schedule import TaskRecord, claims, failure_summary, schedule
from argus.training.spec import ResolvedTaskSpec, TaskLimits, validate_task_spec
from argus.training.states import (
    InvalidTaskTransition,
    TaskState,
    TaskTrigger,
    next_task_state,
)
from argus.training.submission import LaunchSettings, build_submission, task_demand
from argus.yamlspec import SpecInvalid, load_yaml_mapping

pytestmark = pytest.mark.unit

CPU, GPU = TaskLimits(EngineMode.CPU), TaskLimits(EngineMode.GPU)
S, T = TaskState, TaskTrigger


def fields_of(text: str, limits: TaskLimits = CPU) -> list[str]:
    with pytest.raises(SpecInvalid) as e:
        validate_task_spec(load_yaml_mapping(text), limits)
    return [f.field for f in e.value.errors]


def test_an_sft_spec_with_an_int_learning_rate() -> None:
    spec = validate_task_spec(
        load_yaml_mapping(
            "name: a\nworkload: sft\nmodel_source: m\ntrain_file: t\nlearning_rate: 1\n"
        ),
        CPU,
    )
    assert spec.learning_rate == 1.0 and spec.gpus_per_node is None


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("name: a\nworkload: sft\n", ["model_source", "train_file"]),
        ("name: a\nworkload: command\nentrypoint: '  '\n", ["entrypoint"]),
        ("name: a\nworkload: sft\nmodel_source: m\ntrain_file: t\nentrypoint: x\n", ["entrypoint"]),
        (
            "name: a\nworkload: command\nentrypoint: x\nseed: 1\nmax_seq_len: 64\n",
            ["max_seq_len", "seed"],
        ),
        ("name: a\nworkload: command\nentrypoint: x\nnnodes: 2\n", ["nnodes"]),
        ("name: a\nworkload: command\nentrypoint: x\nenv: {'1X': y}\n", ["env.1X"]),
        ("name: a\nworkload: command\nentrypoint: x\nenv: {HF_HOME: /}\n", ["env.HF_HOME"]),
        ("name: a\nworkload: command\nentrypoint: x\nmax_steps: 2.5\n", ["max_steps"]),
        ("name: a\nworkload: command\nentrypoint: x\nlearning_rate: 0\n", ["learning_rate"]),
        ("name: a\nworkload: command\nentrypoint: x\ncpus_per_node: true\n", ["cpus_per_node"]),
    ],
)
def test_spec_rules_name_the_field(text: str, fields: list[str]) -> None:
    assert sorted(fields_of(text)) == sorted(fields)


def test_zero_gpus_is_for_the_cpu_engine_only() -> None:
    text = "name: a\nworkload: command\nentrypoint: x\ngpus_per_node: 0\n"
    assert validate_task_spec(load_yaml_mapping(text), CPU).gpus_per_node == 0
    assert fields_of(text, GPU) == ["gpus_per_node"]


def test_too_many_env_vars() -> None:
    env = "".join(f"  V{i}: x\n" for i in range(65))
    assert fields_of(f"name: a\nworkload: command\nentrypoint: x\nenv:\n{env}") == ["env"]


@pytest.mark.parametrize(
    ("state", "trigger", "to"),
    [
        (None, T.CREATED, S.QUEUED),
        (S.QUEUED, T.PENDING_RESOURCES, S.QUEUED),
        (S.QUEUED, T.SUBMITTED, S.SUBMITTED),
        (S.SUBMITTED, T.STARTED, S.RUNNING),
        (S.SUBMITTED, T.SUCCEEDED, S.SUCCEEDED),
        (S.RUNNING, T.FAILED, S.FAILED),
        (S.RUNNING, T.CANCEL_REQUESTED, S.RUNNING),
        (S.QUEUED, T.CANCELED, S.CANCELED),
        (S.RUNNING, T.CANCELED, S.CANCELED),
    ],
)
def test_transitions(state: TaskState | None, trigger: TaskTrigger, to: TaskState) -> None:
    assert next_task_state(state, trigger) is to


@pytest.mark.parametrize(
    ("state", "trigger"),
    [
        (S.QUEUED, T.STARTED),
        (S.QUEUED, T.CANCEL_REQUESTED),
        (S.SUCCEEDED, T.CANCELED),
        (S.FAILED, T.STARTED),
        (S.CANCELED, T.SUBMITTED),
        (S.RUNNING, T.CREATED),
        (None, T.SUBMITTED),
    ],
)
def test_refused_transitions(state: TaskState | None, trigger: TaskTrigger) -> None:
    with pytest.raises(InvalidTaskTransition):
        next_task_state(state, trigger)


def rec(
    task_id: str, state: TaskState = S.QUEUED, user: str = "u", gpus: float = 1.0, **kw: object
) -> TaskRecord:
    return TaskRecord(task_id, user, state, f"argus-{task_id}", {"CPU": 1.0, "GPU": gpus}, **kw)  # type: ignore[arg-type]


def node(gpus: float) -> dict[str, dict[str, float]]:
    return {"n1": {"CPU": 8.0, "GPU": gpus}}


def test_schedule_submits_what_fits_and_reports_the_rest_once() -> None:
    plan = schedule([rec("a"), rec("b", gpus=2.0, user="v")], {}, node(1.0))
    assert plan.submit == ("a",)
    assert [(c.task_id, c.trigger) for c in plan.changes] == [("b", T.PENDING_RESOURCES)]
    again = schedule([rec("b", gpus=2.0, last_event="PENDING_RESOURCES")], {}, node(1.0))
    assert again.changes == () and again.submit == ()


def test_schedule_does_nothing_when_the_job_api_is_down() -> None:
    plan = schedule([rec("a"), rec("b", S.RUNNING)], None, node(4.0))
    assert (plan.changes, plan.submit, plan.stop) == ((), (), ())


@pytest.mark.parametrize(
    ("status", "cancel", "trigger"),
    [
        (JobStatus.PENDING, False, None),
        (JobStatus.RUNNING, False, T.STARTED),
        (JobStatus.SUCCEEDED, False, T.SUCCEEDED),
        (JobStatus.FAILED, False, T.FAILED),
        (JobStatus.STOPPED, False, T.FAILED),
        (JobStatus.STOPPED, True, T.CANCELED),
        (JobStatus.FAILED, True, T.CANCELED),
    ],
)
def test_schedule_follows_the_job(
    status: JobStatus, cancel: bool, trigger: TaskTrigger | None
) -> None:
    task = rec("a", S.SUBMITTED, cancel_requested=cancel)
    plan = schedule([task], {"argus-a": JobInfo("argus-a", status)}, node(0.0))
    assert [c.trigger for c in plan.changes] == ([trigger] if trigger else [])
    assert plan.stop == (("argus-a",) if cancel and not status.is_terminal else ())


def test_claims_count_submitted_tasks_ray_does_not_show_running() -> None:
    tasks = [rec("a", S.SUBMITTED), rec("b", S.SUBMITTED), rec("c", S.RUNNING), rec("d")]
    jobs = {
        "argus-a": JobInfo("argus-a", JobStatus.PENDING),
        "argus-b": JobInfo("argus-b", JobStatus.RUNNING),
    }
    assert claims(tasks, jobs) == [{"CPU": 1.0, "GPU": 1.0}]
    assert len(claims(tasks, {})) == 2  # not listed yet: still claimed


def test_failure_summary_keeps_the_error_line_and_drops_the_launchers() -> None:
    job = JobInfo(
        "j",
        JobStatus.FAILED,
        "Job entrypoint command failed with exit code 2, last available logs (truncated to "
        "20,000 chars):\n[argus 2026-11-28T12:00:00Z] task starting on n1: python x\n"
        "argus-sft: error: train.jsonl line 4: the last message is not the assistant's\n"
        "[argus 2026-11-28T12:00:01Z] the command exited with code 2\n",
        exit_code=2,
    )
    summary = failure_summary(job)
    assert summary.startswith("the task failed (exit code 2): ")
    assert "line 4" in summary and "[argus" not in summary
    assert "no message" in failure_summary(JobInfo("j", JobStatus.FAILED))


def test_submission_for_a_gpu_task() -> None:
    launch = LaunchSettings(
        "/opt/py/bin/python",
        Path("/private"),
        "H20",
        "/private/.hf",
    )
    resolved = ResolvedTaskSpec.from_stored(
        {
            "name": "t",
            "workload": "command",
            "entrypoint": "python t.py",
            "cpus_per_node": 2,
            "gpus_per_node": 4,
            "env": {"A": "1"},
        }
    )
    assert task_demand(resolved, launch) == {"CPU": 2.0, "GPU": 4.0, "accelerator_type:H20": 0.001}
    sub = build_submission("tsk_1", "alice", "argus-tsk_1", resolved, launch)
    assert (sub.num_cpus, sub.num_gpus, sub.resources) == (
        2.0,
        4.0,
        {"accelerator_type:H20": 0.001},
    )
    assert sub.entrypoint.startswith(
        "/opt/py/bin/python -m argus.training.launch "
        "--log /private/users/alice/tasks/tsk_1/task.log"
    )
    assert sub.entrypoint.endswith("-- /bin/sh -c 'python t.py'")
    assert sub.env_vars["A"] == "1" and sub.env_vars["ARGUS_TASK_ID"] == "tsk_1"
