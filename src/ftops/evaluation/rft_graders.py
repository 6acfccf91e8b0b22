"""Azure's reinforcement fine-tuning graders, in their exact JSON shape, run locally.

One grader object serves twice: as the reward of an RFT job (the emulator trains against it) and
as a gate's quality check (`grader: {ref: name}`), so what a model is optimised for and what it
is gated on cannot drift apart. Types: `string_check`, `text_similarity`, `score_model`,
`python` and `multi` (Azure's union plus the python grader its RFT guide documents).

Templates: `{{item.<path>}}` reads the data line (the RFT line's fields, `messages` included),
`{{sample.output_text}}` the model's answer and `{{sample.output_json[.<path>]}}` that answer
parsed as JSON. A missing path renders as an empty string; a non-string value as compact JSON.

Metrics come from libraries, not hand-written code: fuzzy_match is rapidfuzz's `WRatio`; bleu,
gleu and meteor are nltk's sentence-level scores (meteor without its WordNet synonym stage: the
WordNet corpus is a separate download, and nothing downloads here, so exact and stem matches
count); rouge_N / rouge_l are Google's `rouge-score` F-measures with stemming. `cosine` (an
embeddings-endpoint metric) is not offered.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import operator
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from ftops.errors import UsageError
from ftops.evaluation.evalset import EvalItem
from ftops.evaluation.graders import Grade

PYTHON_SOURCE_LIMIT = 256 * 1024  # bytes of grader source Azure accepts
PYTHON_TIME_LIMIT = 120.0  # seconds for one grading run (Azure: 2 minutes in total)
PYTHON_MEMORY_LIMIT = 2 * 1024**3  # bytes of address space (Azure: 2 GB RAM)
PYTHON_DISK_LIMIT = 1024**3  # largest file the grader may write (Azure: 1 GB disk)

TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][\w]*)((?:\.[\w-]+)*)\s*\}\}")
NAMESPACES = ("item", "sample")
SAMPLE_FIELDS = ("output_text", "output_json")


class _Shape(BaseModel):
    """Azure's shape exactly: an unknown key is an error, as the service answers it."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StringCheck(_Shape):
    type: Literal["string_check"]
    name: str = ""
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]


Metric = Literal[
    "fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"
]


class TextSimilarity(_Shape):
    type: Literal["text_similarity"]
    name: str = ""
    input: str
    reference: str
    evaluation_metric: Metric
    pass_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5


class ScoreInput(_Shape):
    role: Literal["system", "developer", "user", "assistant"]
    content: str
    type: Literal["message"] | None = None


class SamplingParams(_Shape):
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_completions_tokens: int | None = None
    reasoning_effort: Literal["low", "medium", "high"] | None = None


class ScoreModel(_Shape):
    type: Literal["score_model"]
    name: str = ""
    model: str  # the grader model's deployment
    input: Annotated[list[ScoreInput], Field(min_length=1)]
    range: tuple[float, float] = (0.0, 1.0)
    pass_threshold: float | None = None
    sampling_params: SamplingParams | None = None

    @model_validator(mode="after")
    def _range(self) -> ScoreModel:
        if self.range[0] >= self.range[1]:
            raise ValueError("range must be [low, high] with low < high")
        return self


class Python(_Shape):
    type: Literal["python"]
    name: str = ""
    source: Annotated[str, Field(min_length=1)]
    image_tag: str | None = None
    pass_threshold: float | None = None

    @model_validator(mode="after")
    def _source(self) -> Python:
        problem = python_problem(self.source)
        if problem:
            raise ValueError(problem)
        return self


Single = Annotated[StringCheck | TextSimilarity | ScoreModel | Python, Field(discriminator="type")]


class Multi(_Shape):
    type: Literal["multi"]
    name: str = ""
    graders: Annotated[dict[str, Single], Field(min_length=1)]
    calculate_output: str

    @model_validator(mode="after")
    def _formula(self) -> Multi:
        names = formula_names(self.calculate_output)  # raises on a syntax error
        unknown = sorted(names - set(self.graders))
        if unknown:
            raise ValueError(
                f"calculate_output uses {', '.join(unknown)}; the graders are {', '.join(self.graders)}"
            )
        return self


RftGrader = Annotated[StringCheck | TextSimilarity | ScoreModel | Python | Multi, Field(discriminator="type")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(RftGrader)


def parse(raw: Any) -> StringCheck | TextSimilarity | ScoreModel | Python | Multi:
    """A grader from its JSON object (pydantic's ValidationError names the bad key)."""
    return _ADAPTER.validate_python(raw)  # type: ignore[no-any-return]


def canonical(grader: BaseModel) -> dict[str, Any]:
    """The grader as Azure takes it: the keys set, nothing defaulted in by us."""
    return grader.model_dump(mode="json", exclude_none=True, exclude_unset=True)


def digest(grader: BaseModel) -> str:
    """sha256 of the canonical JSON: part of the job's spec, so an edited grader plans a new job."""
    text = json.dumps(canonical(grader), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- python source checks


def python_problem(source: str) -> str | None:
    """Why Azure would refuse this source, or None: size, syntax, a `grade(sample, item)`."""
    if len(source.encode()) > PYTHON_SOURCE_LIMIT:
        return f"source is {len(source.encode())} bytes; Azure allows 256 KB ({PYTHON_SOURCE_LIMIT} bytes)"
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return f"source line {exc.lineno}: {exc.msg}"
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "grade":
            if len(node.args.args) != 2:
                return f"source line {node.lineno}: grade must take (sample, item)"
            return None
    return "source defines no `def grade(sample, item) -> float`"


# ---------------------------------------------------------------- templates


def references(grader: BaseModel) -> list[str]:
    """Every template reference in the grader, e.g. `item.answer`, `sample.output_text`."""
    texts: list[str] = []
    if isinstance(grader, StringCheck | TextSimilarity):
        texts = [grader.input, grader.reference]
    elif isinstance(grader, ScoreModel):
        texts = [m.content for m in grader.input]
    elif isinstance(grader, Multi):
        return [r for g in grader.graders.values() for r in references(g)]
    return [f"{m.group(1)}{m.group(2)}" for t in texts for m in TEMPLATE.finditer(t)]


def reference_problem(ref: str, item_fields: Iterable[str]) -> str | None:
    """Why a template reference cannot resolve against data lines with these top-level fields."""
    namespace, _, rest = ref.partition(".")
    head = rest.split(".")[0]
    if namespace not in NAMESPACES:
        return f"{{{{{ref}}}}}: the namespace must be item or sample"
    if namespace == "sample" and head not in SAMPLE_FIELDS:
        return f"{{{{{ref}}}}}: sample has {', '.join(SAMPLE_FIELDS)}"
    fields = set(item_fields)
    if namespace == "item" and head not in fields:
        return f"{{{{{ref}}}}}: the data has no field '{head}' (it has {', '.join(sorted(fields))})"
    return None


@dataclass(frozen=True)
class Sample:
    output_text: str
    output_json: Any = None  # the answer parsed as JSON, None when it is not JSON

    @classmethod
    def of(cls, text: str) -> Sample:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return cls(text, parsed)

    def as_dict(self) -> dict[str, Any]:
        return {"output_text": self.output_text, "output_json": self.output_json}


def _lookup(value: Any, path: Sequence[str]) -> Any:
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def render(template: str, sample: Sample, item: dict[str, Any]) -> str:
    scope = {"item": item, "sample": sample.as_dict()}

    def one(match: re.Match[str]) -> str:
        root = scope.get(match.group(1))
        value = _lookup(root, [p for p in match.group(2).split(".") if p])
        if value is None:
            return ""
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))

    return TEMPLATE.sub(one, template)


# ---------------------------------------------------------------- scores


@dataclass(frozen=True)
class Score:
    value: float
    by_grader: dict[str, float] = field(default_factory=dict)  # a multi grader's parts
    error: str = ""  # the grader could not score this sample (the reward is then 0)


def string_check(grader: StringCheck, sample: Sample, item: dict[str, Any]) -> float:
    got, want = render(grader.input, sample, item), render(grader.reference, sample, item)
    match grader.operation:
        case "eq":
            return float(got == want)
        case "ne":
            return float(got != want)
        case "like":
            return float(want in got)
        case _:
            return float(want.lower() in got.lower())


def similarity(metric: str, got: str, want: str) -> float:
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz

        return float(fuzz.WRatio(got, want)) / 100.0
    if metric.startswith("rouge_"):
        from rouge_score import rouge_scorer

        key = "rougeL" if metric == "rouge_l" else f"rouge{metric[-1]}"
        scorer = rouge_scorer.RougeScorer([key], use_stemmer=True)
        return float(scorer.score(want, got)[key].fmeasure)
    hyp, ref = got.split(), want.split()
    if not hyp or not ref:
        return float(hyp == ref)
    if metric == "bleu":
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

        return float(sentence_bleu([ref], hyp, smoothing_function=SmoothingFunction().method1))
    if metric == "gleu":
        from nltk.translate.gleu_score import sentence_gleu

        return float(sentence_gleu([ref], hyp))
    from nltk.translate.meteor_score import meteor_score

    return float(meteor_score([ref], hyp, wordnet=_NoSynonyms()))


class _NoSynonyms:
    """nltk's meteor asks WordNet for synonyms; without the corpus, no word has any."""

    def synsets(self, *_: Any, **__: Any) -> list[Any]:
        return []


Judge = Callable[[str, list[dict[str, str]], dict[str, Any]], str]  # (deployment, messages, params)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def score_model(grader: ScoreModel, sample: Sample, item: dict[str, Any], judge: Judge | None) -> Score:
    if judge is None:
        raise UsageError(
            f"grader {grader.name or 'score_model'} needs its grader model '{grader.model}'",
            fix="run it where that deployment is reachable (the gate's endpoint or the emulator)",
        )
    messages = [{"role": m.role, "content": render(m.content, sample, item)} for m in grader.input]
    params = grader.sampling_params.model_dump(exclude_none=True) if grader.sampling_params else {}
    reply = judge(grader.model, messages, params)
    found = _NUMBER.search(reply)
    low, high = grader.range
    if found is None:
        return Score(low, error=f"the grader model gave no score: {reply[:80]!r}")
    return Score(min(max(float(found.group()), low), high))


# ---------------------------------------------------------------- multi: calculate_output

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}


def _formula(text: str) -> ast.expr:
    try:
        # Azure's formulas write powers as `^`, binding tighter than * and / as in arithmetic.
        return ast.parse(text.replace("^", "**"), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"calculate_output is not a formula ({exc.msg})") from None


def formula_names(text: str) -> set[str]:
    """The grader names a formula uses; raises ValueError on anything but arithmetic."""
    names: set[str] = set()

    def walk(node: ast.expr) -> None:
        match node:
            case ast.Constant(value=int() | float()):
                return
            case ast.Name(id=name):
                names.add(name)
            case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
                walk(left)
                walk(right)
            case ast.UnaryOp(op=ast.USub() | ast.UAdd(), operand=operand):
                walk(operand)
            case ast.Call(func=ast.Name(id=fn), args=args, keywords=[]) if fn in _FUNCTIONS:
                for arg in args:
                    walk(arg)
            case _:
                raise ValueError(
                    f"calculate_output allows numbers, grader names, + - * / ^ and "
                    f"{', '.join(_FUNCTIONS)}; not {ast.unparse(node)!r}"
                )

    walk(_formula(text))
    return names


def calculate(text: str, values: dict[str, float]) -> float:
    """The formula over the named scores, evaluated on its syntax tree (never `eval`)."""
    formula_names(text)

    def value(node: ast.expr) -> float:
        match node:
            case ast.Constant(value=int() | float() as number):
                return float(number)
            case ast.Name(id=name):
                return values[name]
            case ast.BinOp(left=left, op=op, right=right):
                return _BINARY[type(op)](value(left), value(right))
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                return -value(operand)
            case ast.UnaryOp(operand=operand):
                return value(operand)
            case ast.Call(func=ast.Name(id=fn), args=args):
                return float(_FUNCTIONS[fn](*(value(a) for a in args)))
        raise ValueError(ast.unparse(node))  # formula_names already refused it

    return float(value(_formula(text)))


# ---------------------------------------------------------------- python: a limited subprocess

# Runs in `python -I` (no user site, no PYTHONPATH): limits first, then an audit hook that refuses
# sockets and new processes, then the grader's code. The audit hook is what Python offers without
# namespaces (no `unshare` here): it stops the socket module and subprocesses, not ctypes tricks;
# Azure's own sandbox is stronger. Input and output are JSON on stdin/stdout.
_RUNNER = r"""
import json, resource, sys
limits = json.loads(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limits["memory"], limits["memory"]))
resource.setrlimit(resource.RLIMIT_FSIZE, (limits["disk"], limits["disk"]))
resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu"], limits["cpu"]))
job = json.loads(sys.stdin.read())
BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.spawn", "pty.")
def refuse(event, args):
    if event.startswith(BLOCKED):
        raise PermissionError(f"{event}: graders have no network and start no processes")
sys.addaudithook(refuse)
scope = {"__name__": "grader"}
exec(compile(job["source"], "grader.py", "exec"), scope)
out = []
for sample, item in job["pairs"]:
    try:
        out.append({"score": float(scope["grade"](sample, item))})
    except BaseException as exc:
        out.append({"error": f"{type(exc).__name__}: {exc}"[:300]})
sys.stdout.write(json.dumps(out))
"""


def run_python(
    grader: Python, pairs: Sequence[tuple[Sample, dict[str, Any]]], timeout: float = PYTHON_TIME_LIMIT
) -> list[Score]:
    """Grade many samples in one limited process: one start-up per batch, not per sample."""
    if not pairs:
        return []
    limits = {"memory": PYTHON_MEMORY_LIMIT, "disk": PYTHON_DISK_LIMIT, "cpu": int(timeout) + 1}
    job = {"source": grader.source, "pairs": [[s.as_dict(), i] for s, i in pairs]}
    name = grader.name or "python"
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _RUNNER, json.dumps(limits)],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [Score(0.0, error=f"grader {name} ran over {timeout:g} s")] * len(pairs)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [Score(0.0, error=f"grader {name} failed: {last[:200]}")] * len(pairs)
    return [
        Score(float(r["score"])) if "score" in r else Score(0.0, error=str(r["error"]))
        for r in json.loads(done.stdout)
    ]


# ---------------------------------------------------------------- grading


def grade_batch(
    grader: BaseModel, pairs: Sequence[tuple[Sample, dict[str, Any]]], judge: Judge | None = None
) -> list[Score]:
    """Scores of many (sample, item) pairs; python graders run once per batch."""
    if isinstance(grader, Multi):
        parts = {name: grade_batch(g, pairs, judge) for name, g in grader.graders.items()}
        out = []
        for i in range(len(pairs)):
            values = {name: scores[i].value for name, scores in parts.items()}
            errors = "; ".join(s[i].error for s in parts.values() if s[i].error)
            try:
                total = calculate(grader.calculate_output, values)
            except (ZeroDivisionError, ValueError, OverflowError) as exc:
                total, errors = 0.0, errors or f"calculate_output: {exc}"
            out.append(Score(total, values, errors))
        return out
    if isinstance(grader, Python):
        return run_python(grader, pairs)
    if isinstance(grader, ScoreModel):
        return [score_model(grader, s, i, judge) for s, i in pairs]
    if isinstance(grader, StringCheck):
        return [Score(string_check(grader, s, i)) for s, i in pairs]
    if isinstance(grader, TextSimilarity):
        return [
            Score(
                similarity(
                    grader.evaluation_metric, render(grader.input, s, i), render(grader.reference, s, i)
                )
            )
            for s, i in pairs
        ]
    raise TypeError(f"not a grader: {type(grader).__name__}")


def grade(grader: BaseModel, sample: Sample, item: dict[str, Any], judge: Judge | None = None) -> Score:
    return grade_batch(grader, [(sample, item)], judge)[0]


def pass_threshold(grader: BaseModel) -> float:
    """The score at which one answer passes: the grader's own threshold, else full marks."""
    threshold = getattr(grader, "pass_threshold", None)
    if threshold is not None:
        return float(threshold)
    if isinstance(grader, ScoreModel):
        return grader.range[1]
    return 1.0


class GateGrader:
    """An Azure grader as a gate's quality check: each answer passes at `pass_score`."""

    def __init__(self, grader: BaseModel, pass_score: float | None, judge: Judge | None = None) -> None:
        self.grader = grader
        self.pass_score = pass_threshold(grader) if pass_score is None else pass_score
        self.judge = judge
        self.name = f"{getattr(grader, 'name', '') or getattr(grader, 'type', 'grader')}"
        self.version = f"azure+{digest(grader)[7:19]}@{self.pass_score:g}"

    def grade(self, answer: str, item: EvalItem) -> Grade:
        return self.grade_many([(answer, item)])[0]

    def grade_many(self, answers: Sequence[tuple[str, EvalItem]]) -> list[Grade]:
        """Many answers in one batch (a python grader starts one subprocess for all of them)."""
        pairs = [(Sample.of(answer), item.fields) for answer, item in answers]
        return [self._verdict(score) for score in grade_batch(self.grader, pairs, self.judge)]

    def _verdict(self, score: Score) -> Grade:
        ok = score.value >= self.pass_score and not score.error
        detail = score.error or ("" if ok else f"score {score.value:.3f} < {self.pass_score:g}")
        return Grade(ok, score.value, detail)
