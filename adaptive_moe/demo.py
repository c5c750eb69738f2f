"""The main job on the embedded default: the whole adaptive loop, from a base model that does not know a
domain to an admitted expert that answers it.

1. the base answers general questions (route "base", with its confidence);
2. questions about a shipped fictional domain (the Tidewater Guild of Lantern Makers): the base is
   unsure and no expert covers them, so they are answered by the base, flagged, and logged as gaps;
3. the gaps are analysed into a candidate domain; an expert is created from the domain's shipped
   document (training data -> LoRA -> evaluation -> admission) and its admission metrics are shown;
4. the same questions again, worded unlike the document: routed to the new expert, answered, with
   attribution; the general questions still go to the base;
5. a table (question, route, the base's and the answering expert's confidence, answer, correct) and where the
   results were saved.

``adaptive-moe demo`` (``make demo``) runs it; :func:`run_demo` is the library call.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .config import AdaptiveMoEConfig
from .utils.io import atomic_write_text

GENERAL_QUESTIONS = (
    ("What is the capital of France?", ["Paris"]),
    ("What is the capital of Japan?", ["Tokyo"]),
    ("What is the capital of the United Kingdom?", ["London"]),
    ("What is the capital of Greece?", ["Athens"]),
    ("What is the capital of Russia?", ["Moscow"]),
)
DEMO_DOMAIN = "tidewater_guild.md"
DEMO_NAME = "tidewater-guild"


def demo_document() -> Path:
    """The shipped prose page about the invented Tidewater Guild of Lantern Makers."""
    return Path(str(resources.files("adaptive_moe").joinpath("data", "demo", DEMO_DOMAIN)))


def demo_questions() -> list[tuple[str, list[str]]]:
    """25 questions a reader of the document would ask, worded freely (none is in the document as asked)."""
    text = resources.files("adaptive_moe").joinpath("data", "demo", "questions.json").read_text(encoding="utf-8")
    return [(q, list(a)) for q, a in json.loads(text)["questions"]]


@dataclass
class DemoRow:
    """One answered question of the demo."""

    stage: str  # "before" (no expert yet) or "after"
    kind: str  # "general" or "domain"
    question: str
    route: str
    confidence: float | None  # the base's: below the router's threshold, the question goes to an expert
    answer: str
    correct: bool
    experts: list[tuple[str, float]] = field(default_factory=list)
    expert_confidence: float | None = None  # the answering expert's, when one answered


@dataclass
class DemoResult:
    """What the demo measured: the rows, accuracies per stage and kind, the creation result, the files."""

    rows: list[DemoRow]
    accuracy: dict[str, float]
    creation: dict[str, Any]
    gap_report: dict[str, Any]
    seconds: dict[str, float]
    files: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (written to ``results/demo.json``)."""
        return {"rows": [asdict(r) for r in self.rows], "accuracy": self.accuracy, "creation": self.creation,
                "gap_report": self.gap_report, "seconds": self.seconds, "files": self.files}  # fmt: skip


def run_demo(
    config: AdaptiveMoEConfig | None = None, *, progress: bool = True, echo: Callable[[str], None] = print
) -> DemoResult:
    """Run the adaptive loop (see the module docstring) in ``<workspace>/demo`` (emptied first).

    ``echo`` receives the text to show (``print`` by default). Returns a :class:`DemoResult`; the same
    is written to ``<workspace>/demo/results/demo.{json,md}``.
    """
    from . import AdaptiveMoE
    from .evaluation.scoring import get_scorer

    config = config or AdaptiveMoEConfig()
    root = config.workspace_path("demo")
    if root.exists():
        shutil.rmtree(root)  # the demo's own folder: every run starts from a base with no experts
    config = config.replace(workspace=str(root))
    judge = get_scorer("contains")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    echo("== 1. Load the base model; general questions")
    moe = AdaptiveMoE(config)
    echo(f"   {moe!r}")
    domain_qa = demo_questions()
    rows: list[DemoRow] = []

    def ask(stage: str, kind: str, qa: list[tuple[str, list[str]]]) -> list[DemoRow]:
        outs = moe.generate([q for q, _ in qa])
        new = [DemoRow(stage, kind, q, o.route, o.confidence, o.text, bool(judge.score(o.text, golds)), o.experts,
                       o.expert_confidence) for (q, golds), o in zip(qa, outs, strict=True)]  # fmt: skip
        rows.extend(new)
        return new

    t = time.perf_counter()
    echo(format_table(ask("before", "general", list(GENERAL_QUESTIONS))))
    seconds["general_before"] = time.perf_counter() - t

    echo("\n== 2. Questions about the Tidewater Guild of Lantern Makers (invented: the base cannot know)")
    t = time.perf_counter()
    before = ask("before", "domain", domain_qa)
    echo(format_table(before))
    echo(f"   {sum(r.route == 'gap' for r in before)} of {len(before)} recorded as knowledge gaps "
         f"({len(moe.gaps) if moe.gaps is not None else 0} open in the ledger)")  # fmt: skip
    seconds["domain_before"] = time.perf_counter() - t

    echo("\n== 3. Gap analysis, then a new expert from the domain's document")
    t = time.perf_counter()
    report = moe.analyze_gaps()
    echo(str(report))
    seconds["gap_analysis"] = time.perf_counter() - t
    name = DEMO_NAME
    echo(f"   creating expert {name!r} from {demo_document().name} ...")
    result = moe.create_expert(name, documents=[demo_document()], domain="the Tidewater Guild of Lantern Makers",
                               progress=progress)  # fmt: skip
    echo(str(result))
    seconds.update({f"create_{k}": v for k, v in result.timings.items()})

    echo("\n== 4. The same questions again (worded unlike the document), and the general ones")
    t = time.perf_counter()
    after = ask("after", "domain", domain_qa)
    echo(format_table(after, attribution=True))
    general_after = ask("after", "general", list(GENERAL_QUESTIONS))
    echo(format_table(general_after))
    seconds["after"] = time.perf_counter() - t
    example = moe.generate(domain_qa[0][0])
    echo(f"\n   attribution of one answer:\n{_indent(str(example.attribution))}")
    seconds["total"] = time.perf_counter() - t0

    accuracy = {f"{stage}_{kind}": _mean([r.correct for r in rows if r.stage == stage and r.kind == kind])
                for stage in ("before", "after") for kind in ("general", "domain")}  # fmt: skip
    demo = DemoResult(rows=rows, accuracy=accuracy, creation=result.to_dict(), gap_report=report.to_dict(),
                      seconds=seconds, files=[])  # fmt: skip
    demo.files = [str(root / "results" / "demo.json"), str(root / "results" / "demo.md")]
    write_results(demo, root / "results")
    echo("\n== 5. Summary")
    echo(format_summary(demo))
    return demo


def _mean(values: list[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _conf(value: float | None, blank: str = "  -  ") -> str:
    return blank if value is None else f"{value:5.2f}"


def format_table(rows: list[DemoRow], attribution: bool = False, width: int = 58) -> str:
    """A plain-text table: question, route, the base's confidence (what routed it), the answering expert's
    confidence (when one answered), correct, answer."""
    head = f"   {'question':<{width}}  {'route':<7} {'base':>5} {'exprt':>5}  ok  answer"
    lines = [head, "   " + "-" * (len(head) - 3)]
    for r in rows:
        who = f" [{', '.join(n for n, _ in r.experts)}]" if attribution and r.experts else ""
        ok = "✔" if r.correct else "✘"
        lines.append(f"   {_short(r.question, width):<{width}}  {r.route:<7} {_conf(r.confidence)} "
                     f"{_conf(r.expert_confidence)}  {ok}   {_short(r.answer, 60)}{who}")  # fmt: skip
    return "\n".join(lines)


def format_summary(demo: DemoResult) -> str:
    """The demo's closing table and figures as printable text."""
    a = demo.accuracy
    m = demo.creation.get("metrics", {})
    lines = [
        f"   domain accuracy (reader questions): {a['before_domain']:.0%} before the expert -> "
        f"{a['after_domain']:.0%} after",
        f"   general accuracy: {a['before_general']:.0%} before -> {a['after_general']:.0%} after",
        f"   expert admitted: {demo.creation.get('admitted')}; held-out domain accuracy base "
        f"{m.get('domain_accuracy_base', 0):.0%} -> expert {m.get('domain_accuracy', 0):.0%}; routed general "
        f"{m.get('general_routed_before', 0):.0%} -> {m.get('general_routed_after', 0):.0%}",
        f"   time: {demo.seconds.get('total', 0):.0f} s in all ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in demo.seconds.items() if k != "total")
        + ")",
        "   results: " + ", ".join(demo.files),
    ]
    return "\n".join(lines)


def write_results(demo: DemoResult, folder: Path) -> list[str]:
    """``demo.json`` (everything) and ``demo.md`` (the tables and the summary), written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "demo.json", json.dumps(demo.to_dict(), indent=1, default=str))
    md = ["# adaptive_moe demo", "",
          "| stage | kind | question | route | base confidence | expert confidence | correct | answer |",
          "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in demo.rows:
        conf, expert = (_conf(c, "").strip() for c in (r.confidence, r.expert_confidence))
        answer = _short(r.answer, 80).replace("|", "\\|")
        md.append(f"| {r.stage} | {r.kind} | {r.question} | {r.route} | {conf} | {expert} | "
                  f"{'yes' if r.correct else 'no'} | {answer} |")  # fmt: skip
    md += ["", "```", format_summary(demo), "```", ""]
    atomic_write_text(folder / "demo.md", "\n".join(md))
    return [str(folder / "demo.json"), str(folder / "demo.md")]
