"""The running emulator's shared objects, reachable from every request as `app.state.emulator`."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ftops.emulator.faults import FaultState
from ftops.emulator.scheduler import Scheduler
from ftops.emulator.settings import Settings
from ftops.emulator.store import Store
from ftops.emulator.throttle import RateLimiter

if TYPE_CHECKING:
    from ftops.emulator.ml.infer import ChatEngine


class Emulator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.files_dir = settings.data_dir / "files"
        self.jobs_dir = settings.data_dir / "jobs"
        for path in (self.files_dir, self.jobs_dir, settings.cache_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.store = Store(settings.db_path)
        # Faults come from the command line and /admin/faults; they do not outlive a restart.
        self.faults = FaultState(settings.faults)
        self.scheduler = Scheduler(self.store, self.faults)
        self.limiter = RateLimiter()
        # File validation runs off the request path (Azure reports "pending" first, then the verdict).
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftops-files")
        self._engine: ChatEngine | None = None
        self._engine_lock = threading.Lock()

    @property
    def engine(self) -> ChatEngine:
        """The chat engine, created on first use (importing torch takes seconds)."""
        with self._engine_lock:
            if self._engine is None:
                from ftops.emulator.ml.infer import ChatEngine

                self._engine = ChatEngine(self.settings.cache_dir)
            return self._engine

    def file_path(self, file_id: str) -> Path:
        """Only ever called with an id that matched its pattern, so it stays in files_dir."""
        return self.files_dir / file_id

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()
        self.background.shutdown(wait=True, cancel_futures=False)
