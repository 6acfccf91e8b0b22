"""Send an eval set to a deployment, concurrently and at the deployment's own pace.

A deployment admits so many requests and tokens per minute (its SKU capacity). Sending faster
only buys 429s and their Retry-After sleeps; sending one at a time leaves most of the capacity
idle. The runner paces itself with the same token buckets Azure applies (`ftops.ratelimit`),
sized from the capacity, keeps enough requests in flight to use them, and when a 429 arrives
anyway (someone else shares the deployment) every worker holds for the Retry-After the service
asked for. Answers are appended to a progress file as they arrive, so a rerun after a crash or a
timeout sends only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openai

from ftops.azure.connection import backoff, retry_after
from ftops.errors import UsageError
from ftops.evaluation.evalset import EvalItem, EvalSet
from ftops.ratelimit import Bucket, is_reasoning
from ftops.tokenizer import TokenCounter

FILTERED = "[blocked by the content filter]"


@dataclass(frozen=True)
class Limits:
    tokens_per_minute: float
    requests_per_minute: float


class StoppedError(Exception):
    """Another request of the run failed: this one is not sent."""


class Pacer:
    """Client-side token buckets shared by the workers: `acquire` blocks until a request fits.

    The buckets run at HEADROOM of the deployment's limits and start at the first request, not
    at construction: the service's own window starts when our first request reaches it, and a
    client clock running ahead of it by even a fraction of a second costs a 429 and its wait.
    """

    HEADROOM = 0.95

    def __init__(self, limits: Limits | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.limits = limits
        self._lock = threading.Lock()
        self._buckets: tuple[Bucket, Bucket] | None = None
        self._hold_until = 0.0

    def _started(self, now: float) -> tuple[Bucket, Bucket] | None:
        if self._buckets is None and self.limits is not None:
            self._buckets = (
                Bucket(self.limits.tokens_per_minute * self.HEADROOM, stamp=now),
                Bucket(self.limits.requests_per_minute * self.HEADROOM, stamp=now),
            )
        return self._buckets

    def acquire(self, tokens: int, stop: threading.Event | None = None) -> None:
        """Block until a request of `tokens` fits; raise StoppedError once `stop` is set."""
        while True:
            if stop is not None and stop.is_set():
                raise StoppedError
            with self._lock:
                now = self.clock()
                wait = self._hold_until - now
                buckets = self._started(now)
                if wait <= 0 and buckets is not None:
                    token_bucket, request_bucket = buckets
                    token_bucket.refill(now)
                    request_bucket.refill(now)
                    wait = max(token_bucket.wait_for(tokens), request_bucket.wait_for(1))
                    if wait <= 0:
                        token_bucket.take(tokens)
                        request_bucket.take(1)
                        return
                elif wait <= 0:
                    return
            if stop is not None:
                stop.wait(min(wait, 1.0))
            else:
                time.sleep(min(wait, 1.0))

    def hold(self, seconds: float) -> None:
        """The service said wait: nobody sends until then, and the buckets start again empty."""
        with self._lock:
            now = self.clock()
            self._hold_until = max(self._hold_until, now + seconds)
            if self._buckets is not None:
                for bucket in self._buckets:
                    bucket.level, bucket.stamp = 0.0, self._hold_until


@dataclass(frozen=True)
class RunOptions:
    deployment: str
    model: str  # recorded in the progress key: a different model never reuses answers
    seed: int = 0
    repeats: int = 1
    temperature: float = 0.0
    limits: Limits | None = None
    concurrency: int = 8
    timeout: float = 120.0
    attempts: int = 6  # per request, for timeouts and 5xx; 429s wait as told and do not count
    max_throttles: int = 50  # per request: a deployment that throttles forever is an error
    # Store each completion (stored completions) tagged with this and the item's id: an answer
    # whose response a crash lost can be read back instead of asked again (distillation's capture).
    store_tag: str | None = None


@dataclass
class Answer:
    item: str
    repeat: int
    text: str
    filtered: bool = False
    latency: float = 0.0
    # The deployment's own count (usage): what cost per request is figured from.
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class RunStats:
    requests: int = 0  # HTTP requests sent, retries included
    throttled: int = 0  # 429s received
    retried: int = 0  # timeouts and 5xx retried
    resumed: int = 0  # answers taken from the progress file
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0
    first_sent: float = 0.0
    last_done: float = 0.0

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def requests_per_minute(self) -> float:
        """Over the time requests were being sent (a resumed run's skipped answers excluded)."""
        span = self.last_done - self.first_sent
        answered = self.requests - self.throttled - self.retried
        return answered / span * 60 if span > 0 else 0.0


def progress_key(evalset: EvalSet, options: RunOptions, endpoint: str = "") -> str:
    """What makes an answer reusable: the same items, account, deployment, model and sampling.
    (Each item's max_tokens is part of the eval set's digest; repeats index the answers.)"""
    body = json.dumps(
        [evalset.digest, endpoint, options.deployment, options.model, options.seed, options.temperature],
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def _load_progress(path: Path | None) -> dict[tuple[str, int], Answer]:
    if path is None or not path.exists():
        return {}
    done = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            answer = Answer(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a line cut short by a crash: that request runs again
        done[(answer.item, answer.repeat)] = answer
    return done


class Runner:
    def __init__(
        self,
        client: openai.OpenAI,
        options: RunOptions,
        progress: Path | None = None,
        on_answer: Callable[[int, int], None] | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.client = client.with_options(timeout=options.timeout, max_retries=0)
        self.options = options
        self.progress = progress
        self.on_answer = on_answer
        # One pacer per deployment across checks: a new one would start with a full bucket the
        # deployment has already spent.
        self.pacer = pacer or Pacer(options.limits)
        self._stop = threading.Event()
        self._sink: Any = None
        self._answers: dict[tuple[str, int], Answer] = {}
        self._total = 0
        self.stats = RunStats()
        self._lock = threading.Lock()
        self._counter = TokenCounter("o200k_base")

    def run(self, evalset: EvalSet) -> dict[tuple[str, int], Answer]:
        """Every (item id, repeat) answered, from the progress file where it was already."""
        done = _load_progress(self.progress)
        todo = [
            (item, repeat)
            for item in evalset.items
            for repeat in range(self.options.repeats)
            if (str(item.id), repeat) not in done
        ]
        self.stats.resumed = len(evalset.items) * self.options.repeats - len(todo)
        total = len(evalset.items) * self.options.repeats
        if self.on_answer:
            self.on_answer(self.stats.resumed, total)
        if self.progress is not None:
            self.progress.parent.mkdir(parents=True, exist_ok=True)
        prompts = self._counter.count_many([m.content for item, _ in todo for m in item.messages])
        estimates, cursor = [], 0
        for item, _ in todo:
            estimates.append(
                int(prompts[cursor : cursor + len(item.messages)].sum()) + 4 * len(item.messages)
            )
            cursor += len(item.messages)
        self._answers, self._total = done, total
        if self.progress is not None:
            torn = self.progress.exists() and not self.progress.read_bytes().endswith(b"\n")
            self._sink = self.progress.open("a", encoding="utf-8")
            if torn:  # a crash cut the last line short: start a fresh one
                self._sink.write("\n")
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.concurrency))
        try:
            futures = [
                pool.submit(self._one, item, repeat, estimate + item.max_tokens)
                for (item, repeat), estimate in zip(todo, estimates, strict=True)
            ]
            for future in as_completed(futures):
                future.result()  # the first error stops every worker; each answer is saved as it comes
        except BaseException:
            self._stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if self._sink is not None:
                self._sink.close()
                self._sink = None
        self.stats.finished = time.monotonic()
        return done

    def _request(self, item: EvalItem, repeat: int) -> dict[str, Any]:
        options: dict[str, Any] = {
            "seed": self.options.seed + repeat,
            "max_completion_tokens": item.max_tokens,
        }
        if not is_reasoning(self.options.model):  # o-series models take no temperature
            options["temperature"] = self.options.temperature
        if self.options.store_tag is not None:
            options["store"] = True
            options["metadata"] = {"ftops-capture": self.options.store_tag, "ftops-item": str(item.id)[:64]}
        return options

    def _one(self, item: EvalItem, repeat: int, tokens: int) -> Answer:
        attempts = throttles = 0
        while True:
            self.pacer.acquire(tokens, self._stop)
            sent = time.monotonic()
            with self._lock:
                self.stats.requests += 1
                self.stats.first_sent = self.stats.first_sent or sent
            try:
                reply = self.client.chat.completions.create(
                    model=self.options.deployment,
                    messages=item.messages_json(),  # type: ignore[arg-type]
                    **self._request(item, repeat),
                )
            except openai.RateLimitError as exc:
                throttles += 1
                with self._lock:
                    self.stats.throttled += 1
                if throttles > self.options.max_throttles:
                    raise UsageError(
                        f"deployment {self.options.deployment} kept answering 429 ({throttles} times for "
                        f"item {item.id})",
                        fix="raise its capacity or run the gate when it is less busy",
                    ) from None
                self.pacer.hold(retry_after(exc.response) or backoff(throttles))
                continue
            except openai.BadRequestError as exc:
                if _code(exc) == "content_filter":  # the platform refused the prompt itself
                    return self._done(item, repeat, FILTERED, sent, filtered=True)
                raise UsageError(
                    f"deployment {self.options.deployment} refused eval item {item.id}: {_message(exc)}",
                    fix="fix the eval item",
                ) from None
            except (openai.APITimeoutError, openai.APIConnectionError, openai.InternalServerError) as exc:
                attempts += 1
                with self._lock:
                    self.stats.retried += 1
                if attempts >= self.options.attempts:
                    raise UsageError(
                        f"deployment {self.options.deployment} did not answer item {item.id} after "
                        f"{attempts} attempts ({type(exc).__name__})",
                        fix="check the deployment's health and rerun; finished answers are kept",
                    ) from None
                if self._stop.wait(backoff(attempts)):
                    raise StoppedError from None
                continue
            except openai.APIStatusError as exc:
                raise UsageError(
                    f"deployment {self.options.deployment}: HTTP {exc.status_code} {_message(exc)}",
                    fix="check that the deployment exists and this identity may call it",
                ) from None
            choice = reply.choices[0]
            counted = getattr(reply, "usage", None)  # absent from some replies (and test doubles)
            usage = (counted.prompt_tokens, counted.completion_tokens) if counted else (0, 0)
            if choice.finish_reason == "content_filter":
                return self._done(item, repeat, FILTERED, sent, filtered=True, usage=usage)
            return self._done(item, repeat, choice.message.content or "", sent, usage=usage)

    def _done(
        self,
        item: EvalItem,
        repeat: int,
        text: str,
        sent: float,
        *,
        filtered: bool = False,
        usage: tuple[int, int] = (0, 0),
    ) -> Answer:
        now = time.monotonic()
        answer = Answer(str(item.id), repeat, text, filtered, round(now - sent, 3), *usage)
        with self._lock:  # saved here, by the worker: an error elsewhere cannot lose a paid answer
            self.stats.last_done = max(self.stats.last_done, now)
            self._answers[(answer.item, answer.repeat)] = answer
            if self._sink is not None:
                self._sink.write(json.dumps(asdict(answer)) + "\n")
                self._sink.flush()
            count = len(self._answers)
        if self.on_answer:
            self.on_answer(count, self._total)
        return answer


def _code(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error", body) if isinstance(body, dict) else {}
    return str(inner.get("code", "")) if isinstance(inner, dict) else ""


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error", body) if isinstance(body, dict) else {}
    return str(inner.get("message", exc.message)) if isinstance(inner, dict) else exc.message
