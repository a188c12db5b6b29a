"""Run a scenario's steps on a model, checking its properties after every step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memtypes.errors import InputError
from memtypes.explore.model import Action, act, successors
from memtypes.scenario.file import Scenario, Step


@dataclass
class StepOutcome:
    index: int
    """1-based step number."""
    line: int | None
    action: Action
    describe: str | None
    changed: bool
    broken: list[str] = field(default_factory=list)
    """``always`` properties that hold before this step and not after it."""
    reached: list[str] = field(default_factory=list)
    """``sometimes`` targets first reached at this step."""

    def as_dict(self) -> dict[str, Any]:
        d = self.action.as_dict()
        return {"step": self.index, "line": self.line, "actor": d["actor"], "action": d["action"],
                "detail": d["detail"], "args": d["args"], "describe": self.describe,
                "changed": self.changed, "violated": list(self.broken),
                "reached": list(self.reached)}


@dataclass
class RunReport:
    scenario: Scenario
    model_name: str
    init_broken: list[str]
    init_reached: list[str]
    steps: list[StepOutcome]
    violated: dict[str, int]
    """property -> first step (0: the initial state) at which it was broken."""
    reached: dict[str, int]
    unreached: list[str]
    final_state: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _norm(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_norm(x) for x in v]
    return v


def _args_of(a: Action) -> dict[str, Any]:
    return {k: _norm(v) for k, v in a.args}


def _enabled(model: Any, state: Any) -> list[Action]:
    acts = getattr(model, "actions", None)
    if acts is not None:
        return list(acts(state))
    return [a for a, _ in successors(model, state)]


def _choices(vals: list[str], limit: int = 6) -> str:
    more = f", ... ({len(vals) - limit} more)" if len(vals) > limit else ""
    return ", ".join(vals[:limit]) + more


def _list(actions: list[Action], limit: int = 4) -> str:
    if not actions:
        return "none (no action is enabled)"
    names = [str(a) for a in actions[:limit]]
    more = f"; ... ({len(actions) - limit} more)" if len(actions) > limit else ""
    return "; ".join(names) + more


def _among(value: Any, values: set) -> bool:
    try:
        return value in values
    except TypeError:          # a list or a mapping where a name or a number belongs
        return False


def _known(model: Any, states) -> dict[tuple[str, str], dict[frozenset, dict[str, set]]]:
    """(actor, action) -> argument-name set -> the values seen for each argument, among the
    actions enabled in ``states``."""
    out: dict[tuple[str, str], dict[frozenset, dict[str, set]]] = {}
    for s in states:
        for a in _enabled(model, s):
            vals = out.setdefault((a.actor, a.name), {}).setdefault(frozenset(k for k, _ in a.args), {})
            for k, v in a.args:
                vals.setdefault(k, set()).add(_norm(v))
    return out


def match_step(model: Any, state: Any, step: Step, *, where: str, index: int) -> Action:
    """The enabled action that ``step`` names, or an :class:`InputError` saying what is enabled."""
    enabled = _enabled(model, state)
    want = {k: _norm(v) for k, v in step.args.items()}
    for a in enabled:
        if a.actor == step.actor and a.name == step.action and _args_of(a) == want:
            return a
    key = f"steps[{index - 1}]"
    same_actor = [a for a in enabled if a.actor == step.actor]
    same_name = [a for a in same_actor if a.name == step.action]
    if not same_actor:
        actors = sorted({a.actor for a in enabled})
        what = f"step {index}: no action of actor '{step.actor}' is enabled here"
        exp = f"an actor among {', '.join(actors) or '(none)'}; enabled: {_list(enabled)}"
    elif not same_name:
        what = f"step {index}: action '{step.actor}.{step.action}' is not enabled here"
        exp = f"one of the enabled actions: {_list(enabled)}"
    else:
        given = [_args_of(a) for a in same_name]
        unknown = sorted(set(want) - set().union(*(set(g) for g in given)))
        wrong = [k for k in want if k not in unknown
                 and not any(k in g and g[k] == want[k] for g in given)]
        fits = [g for g in given if all(k in g and g[k] == v for k, v in want.items())]
        if unknown:
            what = f"step {index}: unknown argument(s) {', '.join(unknown)} for {step.actor}.{step.action}"
        elif wrong:
            k = wrong[0]
            vals = list(dict.fromkeys(str(g[k]) for g in given if k in g))
            what = (f"step {index}: {k}={want[k]} is not enabled here for "
                    f"{step.actor}.{step.action}")
            raise InputError(what, where=where, line=step.line, field=f"{key}.{k}",
                             expected=f"{k} one of {_choices(vals)}")
        elif fits:
            missing = sorted(min((set(g) - set(want) for g in fits), key=len))
            what = f"step {index}: missing argument(s) {', '.join(missing)} for {step.actor}.{step.action}"
        else:
            what = f"step {index}: {step.label()} is not enabled with these arguments"
        exp = f"one of: {_list(same_name)}"
    raise InputError(what, where=where, line=step.line, field=key, expected=exp)


def _check(props: list, state: Any) -> tuple[set[str], set[str]]:
    broken, hit = set(), set()
    for p in props:
        ok = bool(p.check(state))
        if p.kind == "always" and not ok:
            broken.add(p.name)
        elif p.kind == "sometimes" and ok:
            hit.add(p.name)
    return broken, hit


def run(model: Any, scenario: Scenario) -> RunReport:
    """Run ``scenario`` on ``model`` (already built for its family, kernel, variant, params)."""
    inits = list(model.init_states())
    if scenario.init >= len(inits):
        raise scenario.error(f"init {scenario.init} is out of range", "init",
                             f"0..{len(inits) - 1}")
    props = list(model.properties())
    order = [p.name for p in props]
    state = inits[scenario.init]
    broken, hit = _check(props, state)
    violated = {n: 0 for n in order if n in broken}
    reached = {n: 0 for n in order if n in hit}
    describe = getattr(model, "describe", None)
    outcomes: list[StepOutcome] = []
    seen = [*inits] + [n for s0 in inits for _a, n in successors(model, s0)]
    known: dict | None = None
    for i, step in enumerate(scenario.steps, start=1):
        try:
            a = match_step(model, state, step, where=scenario.path, index=i)
        except InputError:
            # a step this kernel does not offer here (e.g. its memslot was refused earlier) but
            # that the model knows: it changes nothing, and says so -- so one scenario runs
            # under every kernel and variant.  An unknown action or argument stays an error.
            if known is None:
                known = _known(model, seen)
            if frozenset(step.args) not in known.get((step.actor, step.action), {}):
                raise
            # a value outside the model's vocabulary (a mistyped backing, slot 99) stays an error
            vocab = getattr(model, "argument_values", None)
            vocab = vocab().get((step.actor, step.action), {}) if vocab is not None else {}
            if any(k in vocab and not _among(_norm(v), vocab[k]) for k, v in step.args.items()):
                raise
            a = act(step.actor, step.action, **step.args)
            outcomes.append(StepOutcome(i, step.line, a, "not possible here: changes nothing",
                                        False, [], []))
            continue
        nxt = model.next_state(state, a)
        changed = nxt is not None
        if nxt is None:
            nxt = state
        text = None
        if describe is not None:
            text = describe(state, a, nxt)
        now_broken, now_hit = _check(props, nxt)
        newly = [n for n in order if n in now_broken and n not in broken]
        first = [n for n in order if n in now_hit and n not in reached]
        for n in newly:
            violated.setdefault(n, i)
        for n in first:
            reached[n] = i
        outcomes.append(StepOutcome(i, step.line, a, str(text) if text else None, changed,
                                    newly, first))
        broken, state = now_broken, nxt
        seen.append(state)
    sometimes = [p.name for p in props if p.kind == "sometimes"]
    fmt = getattr(model, "format_state", None)
    return RunReport(scenario, getattr(model, "name", type(model).__name__),
                     [n for n in order if violated.get(n) == 0],
                     [n for n in order if reached.get(n) == 0], outcomes, violated, reached,
                     [n for n in sometimes if n not in reached],
                     str(fmt(state)) if fmt is not None else None)
