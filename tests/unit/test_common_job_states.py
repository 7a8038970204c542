"""The job record's state machine (services/common/job_states.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.common import job_states
from services.common.contract import GenerationRequest, JobRecord, JobStatus

RUN = job_states.RunInfo(
    worker="worker-1",
    model_profile="tiny",
    model_revision="tiny-abc",
    prompt_used="a cat",
    negative_prompt_used="blurry",
    total_steps=40,
)
OUTCOME = job_states.Outcome(
    images=[("img_1", 7), ("img_2", 8)],
    width=64,
    height=48,
    total_steps=40,
    encode_s=0.1,
    denoise_s=2.0,
    decode_s=0.3,
    restore_used="color",
)


def queued() -> JobRecord:
    return job_states.new_record(GenerationRequest(job_id="job_1", tenant="t"), now=100.0)


def running() -> JobRecord:
    record = queued()
    job_states.start(record, RUN, now=101.0)
    return record


def test_a_new_record_is_queued_with_its_creation_time() -> None:
    record = queued()
    assert record.status == JobStatus.JOB_STATUS_QUEUED
    assert record.timings.created_at == 100.0 and record.request.job_id == "job_1"


def test_start_records_the_run_and_counts_an_attempt() -> None:
    record = running()
    assert record.status == JobStatus.JOB_STATUS_RUNNING
    assert record.timings.started_at == 101.0 and record.attempts == 1
    assert (record.worker, record.model_profile, record.model_revision) == (
        "worker-1",
        "tiny",
        "tiny-abc",
    )
    assert (record.prompt_used, record.negative_prompt_used) == ("a cat", "blurry")
    assert (record.progress.step, record.progress.total) == (0, 40)


def test_a_redelivered_running_job_starts_again_as_a_second_attempt() -> None:
    record = running()
    record.error = "left over"
    job_states.start(record, RUN, now=200.0)
    assert record.attempts == 2 and record.timings.started_at == 200.0 and record.error == ""


def test_progress_and_success() -> None:
    record = running()
    job_states.report_progress(record, 12, 40)
    assert (record.progress.step, record.progress.total) == (12, 40)
    job_states.succeed(record, OUTCOME, now=105.0)
    assert record.status == JobStatus.JOB_STATUS_SUCCEEDED
    assert [(image.image_id, image.seed) for image in record.images] == [
        ("img_1", 7),
        ("img_2", 8),
    ]
    assert {(image.width, image.height) for image in record.images} == {(64, 48)}
    assert record.progress.step == 40 and record.timings.finished_at == 105.0
    assert (record.timings.encode_s, record.timings.denoise_s, record.timings.decode_s) == (
        pytest.approx(0.1),
        pytest.approx(2.0),
        pytest.approx(0.3),
    )
    assert record.restore_used == "color"


def test_a_job_that_could_not_be_enqueued_fails_from_queued() -> None:
    record = queued()
    job_states.fail(record, "could not enqueue the job", now=100.5)
    assert record.status == JobStatus.JOB_STATUS_FAILED
    assert record.error == "could not enqueue the job" and record.timings.finished_at == 100.5
    assert record.attempts == 0


def test_a_refused_job_is_one_attempt_by_the_worker() -> None:
    record = queued()
    job_states.refuse(record, "bad input", "worker-1", "tiny", now=102.0)
    assert record.status == JobStatus.JOB_STATUS_FAILED and record.error == "bad input"
    assert record.attempts == 1 and record.worker == "worker-1" and record.model_profile == "tiny"
    assert record.timings.started_at == record.timings.finished_at == 102.0


@pytest.mark.parametrize("make", [queued, running])
def test_queued_and_running_jobs_can_be_canceled(make: Callable[[], JobRecord]) -> None:
    record = make()
    job_states.cancel(record, "canceled by the client", now=103.0)
    assert record.status == JobStatus.JOB_STATUS_CANCELED
    assert record.error == "canceled by the client" and record.timings.finished_at == 103.0


def test_terminal_records_never_change() -> None:
    ended = []
    for end in (
        lambda r: job_states.succeed(r, OUTCOME),
        lambda r: job_states.fail(r, "boom"),
        lambda r: job_states.cancel(r, "canceled"),
    ):
        record = running()
        end(record)
        ended.append(record)
    for record in ended:
        assert job_states.is_terminal(record)
        before = record.SerializeToString()
        for target in job_states.TRANSITIONS:
            assert not job_states.can_transition(record, target)
        with pytest.raises(job_states.IllegalTransition, match="cannot go from"):
            job_states.start(record, RUN)
        with pytest.raises(job_states.IllegalTransition):
            job_states.cancel(record, "again")
        with pytest.raises(job_states.IllegalTransition):
            job_states.report_progress(record, 1, 40)
        assert record.SerializeToString() == before


def test_a_queued_job_neither_succeeds_nor_reports_progress() -> None:
    with pytest.raises(job_states.IllegalTransition, match="from queued to succeeded"):
        job_states.succeed(queued(), OUTCOME)
    with pytest.raises(job_states.IllegalTransition):
        job_states.report_progress(queued(), 1, 40)
