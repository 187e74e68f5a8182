"""The runtime planner's only door into modelint's static facts.

Everything the planner needs from the static analysis (which forward passes and training steps
sit on a line, the mode a model is in there, whether autograd is off, the function around them)
is read here and handed on as plain data, so that a change in the shape of the facts
(`modelint.facts`) is absorbed in this one file. No torch, no user code: the linting process.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

# Modes as the planner speaks of them.
TRAIN, EVAL, UNKNOWN = "train", "eval", "unknown"


@dataclass(frozen=True)
class ForwardSite:
    """`model(x)` at a line: the model expression, its mode there, the grad mode, the function around it."""

    key: str                 # `model`, `self.net.encoder`
    mode: str                # TRAIN / EVAL / UNKNOWN, callers' modes included for a helper's parameter
    grad_free: bool          # definitely under no_grad/inference_mode
    function: str | None     # name of the enclosing function, None at module level
    params: tuple[str, ...]  # its parameters


@dataclass(frozen=True)
class StepSite:
    """A training step (`loss.backward()`, `optimizer.step()`) and the models whose mode is known there."""

    models: tuple[tuple[str, str, bool], ...]  # (key, mode, put in eval mode on some path), set ones only
    function: str | None
    params: tuple[str, ...]


def _mode_of(fact) -> str:
    if fact is None:
        return UNKNOWN
    if fact.definitely_eval:
        return EVAL
    if fact.train_sites:
        return TRAIN  # on at least one path: what a finding claims
    if fact.eval_sites and not fact.havoc:
        return EVAL
    return UNKNOWN


def _function(site) -> tuple[str | None, tuple[str, ...]]:
    function = site.function
    if function is None:
        return None, ()
    return function.name, tuple(function.params)


class StaticFacts:
    """One file's static facts, computed on first use (one libcst parse)."""

    def __init__(self, path: str, text: str, index=None) -> None:
        self.path, self.text = path, text
        self.index = index  # the run's ProjectIndex: calls into other files, as the findings saw them
        self._facts = None

    @property
    def _file(self):
        if self._facts is None:
            from modelint.facts import FileFacts

            self._facts = FileFacts(cst.parse_module(self.text), self.path, self.index, text=self.text)
        return self._facts

    def sites_at(self, line: int) -> tuple[list[ForwardSite], list[StepSite]]:
        flow, positions = self._file.flow, self._file.positions
        positions.everything()  # (every forward and step is compared with the line)
        forwards, steps = [], []
        for function_flow in flow.flows:
            for forward in function_flow.forwards.values():  # keyed by call, or (call, phase) in a phase loop
                if positions[forward.call].start.line == line:
                    forwards.append(self._forward(forward))
            for call, step in function_flow.steps.items():
                if positions[call].start.line == line:
                    steps.append(self._step(step))
        return forwards, steps

    def _forward(self, forward) -> ForwardSite:
        from modelint.facts.forward_modes import effective_mode

        mode = _mode_of(effective_mode(self._file, forward))  # what the findings judge: objects' modes too
        if mode == UNKNOWN and forward.mode.entry and not forward.mode.havoc:
            # A helper evaluating its parameter: the modes its callers pass in.
            passed = [flow.passed_modes[forward.call] for flow in self._file.flow.flows
                      if forward.call in flow.passed_modes]
            if passed:
                joined = passed[0]
                for fact in passed[1:]:
                    joined = joined.join(fact)
                mode = _mode_of(joined)
        name, params = _function(forward)
        return ForwardSite(forward.key, mode, bool(forward.grad.definitely_free), name, params)

    def _step(self, step) -> StepSite:
        models = tuple((key, _mode_of(fact), bool(fact.eval_sites)) for key, fact in step.models.items()
                       if fact.train_sites or fact.eval_sites)
        name, params = _function(step)
        return StepSite(models, name, params)
