"""``--backend auto`` (the default): the engine this CPU class runs the model fastest on, by a rule that rests on
measurements written in docs/running.md, "Which engine".

The rule reads the CPU's instruction-set extensions where the harness reads them for every report
(:func:`cmdline.provenance.cpu_isa`). ``auto`` is resolved once, at the start of a command, to a named engine:
everything after it (backends, run directories, submission trees) sees that name only. A model the chosen engine
cannot run well (OpenVINO without the QDQ form of an INT8 model), or an engine that cannot be imported here, falls
back to the other engine with one line that says why. ``run.json`` records the choice (``backend_choice``) and the
summary line names it. Naming an engine (``--backend deepsparse``) overrides the rule; DeepSparse stays a
first-class engine, the one the rule keeps where nothing has been measured.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

from cmdline.provenance import cpu_isa
from harness.backends.registry import BACKENDS, ENGINE_NAMES
from harness.models import ModelInfo

AUTO = "auto"
BACKEND_CHOICES = (AUTO, *BACKENDS)
# The engine each of the rule's engines gives way to when it cannot run (not importable, or not this model)
OTHER_ENGINE = {"openvino": "deepsparse", "deepsparse": "openvino"}
WHERE_MEASURED = "docs/running.md, Which engine"


@dataclass(frozen=True)
class EngineRule:
    """One line of the rule: a CPU with any of ``flags`` runs ``engine``."""

    flags: frozenset[str]
    cpu_class: str  # the class in a few words, as the summary line shows it
    engine: str
    measured: bool  # False: no measurement on this class says which engine is faster


# First match wins. Beside each line: where the measurement it rests on is written (docs/running.md, Which engine).
ENGINE_RULE = (
    EngineRule(frozenset({"amx_int8", "amx_bf16", "amx_tile"}), "AMX", "openvino", True),  # "AMX: Intel Xeon"
    EngineRule(frozenset({"avx512_vnni"}), "AVX-512 VNNI, no AMX", "openvino", True),  # the Zen 4 and Zen 5 tables
    EngineRule(frozenset({"avx2"}), "AVX2 only", "deepsparse", False),  # "AVX2 only": OpenVINO not measured there
)
NO_RULE = EngineRule(frozenset(), "no AVX2", "deepsparse", False)  # below the harness's requirements


def rule_for(flags: Iterable[str]) -> EngineRule:
    """The line of :data:`ENGINE_RULE` a CPU with ``flags`` (as /proc/cpuinfo spells them) falls under."""
    have = set(flags)
    return next((rule for rule in ENGINE_RULE if rule.flags & have), NO_RULE)


def rule_reason(rule: EngineRule, flags: Iterable[str]) -> str:
    """Why the rule picks ``rule.engine`` on a CPU with ``flags``, in a sentence."""
    engine = ENGINE_NAMES[rule.engine]
    found = ", ".join(sorted(rule.flags & set(flags)))
    if rule.measured:
        return (f"this CPU has {rule.cpu_class} ({found}), a class on which {engine} ran this harness's default model "
                f"faster than {ENGINE_NAMES[OTHER_ENGINE[rule.engine]]} ({WHERE_MEASURED})")
    if rule is NO_RULE:
        return (f"this CPU reports none of AMX, AVX-512 VNNI or AVX2 (or its flags could not be read); {engine}, the "
                f"harness's reference engine, which nothing has been measured against on such a CPU")
    other = ENGINE_NAMES[OTHER_ENGINE[rule.engine]]
    return (f"this CPU has {rule.cpu_class} ({found}), a class on which {other} has not been measured against {engine}: "
            f"{engine} until it is (this line of the rule rests on no measurement; {WHERE_MEASURED})")


@dataclass(frozen=True)
class EngineChoice:
    """The engine a command runs and why: ``requested`` as given (``auto`` or a name), ``chosen`` a name."""

    requested: str
    chosen: str
    reason: str
    cpu_class: str | None = None  # auto: the rule's line
    fallback: str | None = None  # auto: why the rule's engine gave way to ``chosen``

    @property
    def automatic(self) -> bool:
        return self.requested == AUTO

    def as_dict(self) -> dict:
        """What ``run.json`` records as ``backend_choice``."""
        return asdict(self)

    def console_line(self) -> str:
        """One line for the start of a command: the engine, and why when ``auto`` chose it."""
        if not self.automatic:
            return f"engine: {self.chosen} (named with --backend)"
        if self.fallback:
            return (f"engine: {self.chosen}, by --backend auto falling back from {OTHER_ENGINE[self.chosen]} (the "
                    f"rule's engine on {self.cpu_class}): {self.fallback}")
        return f"engine: {self.chosen}, chosen by --backend auto: {self.reason}; --backend NAME overrides"


def summary_tag(choice: dict | None) -> str:
    """What a run's summary line says about how its engine was chosen (run.json's ``backend_choice``): empty for
    an engine named on the command line."""
    if not choice or choice.get("requested") != AUTO:
        return ""
    if choice.get("fallback"):
        return f" (auto: {choice.get('cpu_class')}; fallback from {OTHER_ENGINE.get(choice.get('chosen'))})"
    return f" (auto: {choice.get('cpu_class')})"


def choose_engine(requested: str, *, flags: Iterable[str] | None = None) -> EngineChoice:
    """Resolve ``--backend`` before the model is known: a named engine as it is; ``auto`` by :data:`ENGINE_RULE` on
    ``flags`` (default: this CPU's), falling back to the other engine when the rule's cannot be imported here."""
    if requested != AUTO:
        return EngineChoice(requested=requested, chosen=requested, reason="named with --backend")
    flags = cpu_isa() if flags is None else list(flags)
    rule = rule_for(flags)
    choice = EngineChoice(requested=AUTO, chosen=rule.engine, reason=rule_reason(rule, flags), cpu_class=rule.cpu_class)
    broken = import_problem(rule.engine)
    other = OTHER_ENGINE[rule.engine]
    if broken and not import_problem(other):
        return replace(choice, chosen=other, fallback=f"{rule.engine} cannot be imported here ({broken})")
    return choice


def fit_to_model(choice: EngineChoice, model: ModelInfo, *, packing: bool = False) -> EngineChoice:
    """``auto`` once the model is known: a model the chosen engine cannot run in the form it was chosen for falls back
    to the other engine (OpenVINO runs an INT8 model's matmuls in INT8 only from its QDQ form). A named engine is
    never changed (``openvino_model`` warns about such a model instead)."""
    if not choice.automatic or choice.fallback or choice.chosen != "openvino":
        return choice
    from harness.backends.openvino_backend import FLOAT_FORM_COST, int8_in_float_reason

    slow = int8_in_float_reason(model, packing=packing)
    if slow is None or import_problem("deepsparse"):
        return choice
    return replace(choice, chosen="deepsparse",
                   fallback=f"{slow}, whose INT8 matmuls OpenVINO would run in float, {FLOAT_FORM_COST}")


def announce(choice: EngineChoice) -> None:
    """Say once, before the engines compile, which engine ``auto`` chose and why (nothing for a named engine)."""
    if choice.automatic:
        print(choice.console_line(), file=sys.stderr)


def import_problem(engine: str) -> str | None:
    """Why ``engine``'s library cannot be imported here (None: it can)."""
    try:
        importlib.import_module(engine)
    except Exception as exc:  # ImportError, or a native library that fails to load on this CPU
        return f"{type(exc).__name__}: {exc}"
    return None
