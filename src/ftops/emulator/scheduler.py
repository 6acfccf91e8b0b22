"""Runs queued jobs: at most one training at a time per emulated account, as on Azure.

A thread in the server process starts a spawned worker process per job, notices workers that
died, and on shutdown asks running jobs to pause so a restart resumes them where they stopped.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

from ftops.emulator import worker
from ftops.emulator.faults import FaultState
from ftops.emulator.store import ACTIVE, Doc, Store

QUEUED = ("pending", "resuming")


class Scheduler:
    def __init__(self, store: Store, faults: FaultState, poll_seconds: float = 0.2) -> None:
        self.store = store
        self.faults = faults
        self.poll_seconds = poll_seconds
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: dict[str, BaseProcess] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ftops-scheduler", daemon=True)

    def start(self) -> None:
        self.recover()
        self._thread.start()

    def recover(self) -> None:
        """After a restart no worker is alive: resume paused state, or fail honestly."""
        for job_id, _, status in self.store.jobs_with_status(*ACTIVE):
            found = self.store.get_job(job_id)
            if found is None:
                continue
            _, internal, _ = found
            if internal.get("resume_dir"):
                self.store.update_job(job_id, _set_status("resuming"))
                worker.add_event(
                    self.store, job_id, "The emulator restarted; the job resumes from its saved state."
                )
                continue
            step, total = internal.get("step", 0), internal.get("total_steps", "?")
            message = (
                f"The emulator stopped while this job was {status} (step {step}/{total}) and no resumable "
                "state was saved; create the job again."
            )
            self.store.update_job(job_id, _fail(message), control=None)
            worker.add_event(self.store, job_id, message, level="error")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # keep scheduling; the next tick retries
                print(f"ftops emulator: scheduler error: {exc}", flush=True)
            self._stop.wait(self.poll_seconds)

    def tick(self) -> None:
        for job_id, proc in list(self._procs.items()):
            if proc.is_alive():
                continue
            proc.join()
            del self._procs[job_id]
            found = self.store.get_job(job_id)
            if found and found[0]["status"] in ACTIVE:
                message = f"The training process exited unexpectedly (exit code {proc.exitcode})."
                self.store.update_job(job_id, _fail(message), control=None)
                worker.add_event(self.store, job_id, message, level="error")
        self._check_files()
        busy = {account for _, account, _ in self.store.jobs_with_status(*ACTIVE)}
        for job_id, account, status in self.store.jobs_with_status(*QUEUED):
            if account in busy:
                continue
            busy.add(account)
            self._start(job_id, status)

    def _check_files(self) -> None:
        """Jobs created before their files were processed move on (or fail) once they are."""
        for job_id, account, _ in self.store.jobs_with_status("created"):
            found = self.store.get_job(job_id)
            if found is None:
                continue
            doc, _, _ = found
            files = [
                self.store.get_file(account, f)
                for f in (doc["training_file"], doc.get("validation_file"))
                if f
            ]
            keys = ("training_file", "validation_file")[: len(files)]
            broken = [(k, f) for k, f in zip(keys, files, strict=True) if f is None or f["status"] == "error"]
            if broken:
                key, bad = broken[0]
                what = key.replace("_", " ")
                reason = (
                    f"The {what} was deleted."
                    if bad is None
                    else f"The {what} '{bad['id']}' failed validation: {bad.get('status_details')}"
                )
                message = f"The job failed due to an invalid {what}. {reason}"
                self.store.update_job(job_id, _fail(message, f"invalid_{key}", param=key), control=None)
                worker.add_event(self.store, job_id, message, level="error")
            elif all(f is not None and f["status"] == "processed" for f in files):
                self.store.update_job(job_id, _set_status("pending"))
                worker.add_event(self.store, job_id, "Files validated; the job is queued.")

    def _start(self, job_id: str, status: str) -> None:
        fail_at = self.faults.faults.fail_job_at_step

        claimed = False

        def started(doc: Doc, internal: Doc) -> bool | None:
            nonlocal claimed
            if doc["status"] != status:  # cancelled (or changed) since it was listed: leave it
                return False
            claimed = True
            doc["status"] = "running"
            if fail_at is not None and status == "pending":
                internal["fail_at_step"] = fail_at
            return None

        self.store.update_job(job_id, started)
        if not claimed:
            return
        worker.add_event(self.store, job_id, "Job resumed." if status == "resuming" else "Job started.")
        proc = self._ctx.Process(
            target=worker.run, args=(str(self.store.path), job_id, os.getpid()), name=f"ftops-{job_id}"
        )
        proc.start()
        self._procs[job_id] = proc

    def stop(self, grace_seconds: float = 60.0) -> None:
        """Pause running jobs (they save resumable state), wait for them, then stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for job_id in self._procs:
            self.store.update_job(job_id, lambda doc, internal: None, control="shutdown")
        deadline = time.monotonic() + grace_seconds
        for proc in self._procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join()
        self._procs.clear()


def _set_status(status: str) -> Callable[[Doc, Doc], None]:
    def change(doc: Doc, internal: Doc) -> None:
        doc["status"] = status

    return change


def _fail(
    message: str, code: str = "training_interrupted", param: str | None = None
) -> Callable[[Doc, Doc], None]:
    def change(doc: Doc, internal: Doc) -> None:
        doc.update(
            status="failed",
            finished_at=int(time.time()),
            estimated_finish=None,
            error={"code": code, "message": message, "param": param},
        )

    return change
