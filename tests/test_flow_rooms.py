"""The rooms of the mode flow (modelint.facts), each on a small piece of code.

The fixtures test what the rules report; these pin down the facts the rules read: the
lattices, where a model comes from, what a forward is for, what a call does to a mode,
and what an object's methods leave on its model.
"""

from __future__ import annotations

import textwrap

import libcst as cst

from modelint.engine import parse
from modelint.facts import FileFacts
from modelint.facts.forward_modes import effective_mode
from modelint.facts.uses import intent_of
from modelint.facts.modules import Dependence
from modelint.facts.lattice import ENTRY_MODE, GRAD_ENABLED, GradFact, ModeFact, mode_of_call
from modelint.facts.state import State, join


def facts_of(source: str, path: str = "train.py") -> FileFacts:
    return FileFacts(parse(textwrap.dedent(source)), path)


def forwards(facts: FileFacts) -> dict[int, object]:
    """Line -> the forward recorded there (the last one if several)."""
    out = {}
    for flow in facts.flow.flows:
        for forward in flow.all_forwards():
            out[facts.positions[forward.call].start.line] = forward
    return out


def call(text: str) -> cst.Call:
    return cst.parse_expression(text)


# -- lattice.py ---------------------------------------------------------------------------------

def test_mode_fact_join_and_exit_effect() -> None:
    built, switched = call("Net()"), call("model.eval()")
    train = ModeFact(train_sites=frozenset({built}))
    evaluated = train.switched("eval", switched)
    assert train.definitely_train and evaluated.definitely_eval
    both = train.join(evaluated)
    assert not both.definitely_train and not both.definitely_eval and both.exit_effect == "unknown"
    assert evaluated.join(ENTRY_MODE).exit_effect == "may-eval"
    assert ENTRY_MODE.unknown and not ENTRY_MODE.certain


def test_grad_fact_entry_is_replaced_by_the_callers() -> None:
    free = GradFact(free_sites=frozenset({call("torch.no_grad()")}))
    inside_helper = GradFact(unknown=True)
    assert inside_helper.at_entry(free).definitely_free
    assert not inside_helper.at_entry(GRAD_ENABLED).definitely_free


def test_mode_of_call() -> None:
    assert mode_of_call(call("m.eval()")) == "eval"
    assert mode_of_call(call("m.train()")) == "train"
    assert mode_of_call(call("m.train(False)")) == "eval"
    assert mode_of_call(call("m.train(mode=True)")) == "train"
    assert mode_of_call(call("m.train(flag)")) is None
    assert mode_of_call(call("m.eval(x)")) is None


# -- state.py -------------------------------------------------------------------------------------

def test_state_submodule_takes_its_parents_mode_and_join_keeps_both_paths() -> None:
    site = call("model.eval()")
    a = State({"model": ModeFact().switched("eval", site)}, GRAD_ENABLED)
    assert a.fact("model.encoder").definitely_eval
    b = State({"model": ModeFact(train_sites=frozenset({call("Net()")}))}, GRAD_ENABLED)
    joined = join(a, b)
    assert joined.fact("model").train_sites and joined.fact("model").eval_sites


def test_saved_mode_is_restored_and_an_idle_restore_is_recorded() -> None:
    facts = facts_of('''
        import torch

        def embed(model, batches):
            was_training = model.training
            model.eval()
            out = [model(b) for b in batches]
            model.train(was_training)
            return out

        def peek(model, batch):
            training = model.training
            with torch.no_grad():
                out = model(batch)
            model.train(training)
            return out
    ''')
    summaries = facts.flow.summaries
    assert "model" not in summaries["embed"].effects  # handed back as it came: no effect for the caller
    flows = {flow.function.name: flow for flow in facts.flow.flows if flow.function is not None}
    assert not flows["embed"].idle_restores
    assert set(flows["peek"].idle_restores) == {"model"}


# -- provenance.py / bindings.py --------------------------------------------------------------------

def test_provenance_of_chains_factories_and_copies() -> None:
    facts = facts_of('''
        import copy
        import torch.nn as nn

        def build():
            return nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))

        def main(x):
            a = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).to("cpu").eval()
            a(x)
            b = build()
            b(x)
            b.eval()
            c = copy.deepcopy(b)
            c(x)
            best, score = copy.deepcopy(a), 0.0
            best(x)
    ''')
    seen = forwards(facts)
    assert seen[10].mode.definitely_eval  # the chain returns the module itself
    assert seen[12].mode.definitely_train  # a factory's fresh module, through its return summary
    assert seen[15].mode.definitely_eval  # a copy has the mode of the original when copied
    assert seen[17].mode.definitely_eval  # tuple-to-tuple assignment binds element by element


# -- intent.py ----------------------------------------------------------------------------------------

def test_intent_words() -> None:
    assert intent_of({"train", "eval"}) == "training"
    assert intent_of({"return"}) == "returned"
    assert intent_of({"eval"}) == "evaluation"
    assert intent_of({"escape", "eval"}) == "escaped"
    assert intent_of({"meta"}) == "shape"
    assert intent_of({"discard"}) == "inference"


def test_intent_follows_the_output() -> None:
    facts = facts_of('''
        import torch.nn.functional as F

        def step(gen, disc, opt, z, real):
            fake = gen(z)
            loss = F.binary_cross_entropy(disc(fake.detach()), real)
            loss.backward()
            opt.step()

        def score(model, x, y):
            return (model(x).argmax(1) == y).float().mean().item()
    ''')
    seen = forwards(facts)
    assert seen[6].intent == "training"  # the discriminator's output reaches the backward
    assert seen[11].intent == "evaluation"  # argmax, comparison, item()


# -- calls.py / summaries.py --------------------------------------------------------------------------

def test_summaries_say_what_a_helper_does_to_its_arguments() -> None:
    facts = facts_of('''
        import torch

        def validate(model, loader):
            model.eval()
            with torch.no_grad():
                return sum(model(x).argmax(1).eq(y).sum().item() for x, y in loader)

        def predict(model, x):
            return model(x).softmax(-1)
    ''')
    summaries = facts.flow.summaries
    assert summaries["validate"].effects == {"model": "eval"}
    assert [(u.param, u.intent) for u in summaries["predict"].forwards] == [("model", "returned")]


def test_a_parameter_bound_to_another_value_is_not_the_callers_model() -> None:
    facts = facts_of('''
        import copy

        def export(model, path):
            model = copy.deepcopy(model)
            model.eval()

        def export_moved(model, path):
            model = model.to("cpu")
            model.eval()

        def export_default(path, model=None):
            if model is None:
                model = load(path)
            model.eval()
    ''')
    summaries = facts.flow.summaries
    assert "export" not in summaries or summaries["export"].effects == {}
    assert summaries["export_moved"].effects == {"model": "eval"}
    assert summaries["export_default"].effects == {"model": "eval"}


def test_a_method_runs_the_layers_of_its_module_list() -> None:
    facts = facts_of('''
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.convs = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 2)])

            def inference(self, x):
                for i, conv in enumerate(self.convs):
                    x = conv(x)
                return self.convs[-1](x)

        def run(callbacks, x):
            for callback in callbacks:
                callback(x)
    ''')
    summaries = facts.flow.summaries
    assert [(u.param, u.intent) for u in summaries["Net.inference"].forwards] == [("self.convs[]", "returned")] * 2
    assert "run" not in summaries or not summaries["run"].forwards  # (a list a caller passes may hold callbacks)


def test_callers_decide_a_helpers_grad_mode() -> None:
    facts = facts_of('''
        import torch

        def infer(model, x):
            return model(x).argmax(1).tolist()

        def main(model, x):
            model.eval()
            with torch.no_grad():
                print(infer(model, x))
    ''')
    infer = next(f for f in facts.collector.functions if f.name == "infer")
    assert facts.flow.entry_grad(infer).definitely_free


# -- objects.py -------------------------------------------------------------------------------------------

TRAINER = '''
    import torch
    import torch.nn.functional as F


    class Trainer:
        def __init__(self, model, opt):
            self.model, self.opt = model, opt

        def train_epoch(self, loader):
            self.model.train()
            for x, y in loader:
                F.cross_entropy(self.model(x), y).backward()
                self.opt.step()

        def fit(self, loader, val, epochs):
            for _ in range(epochs):
                self.train_epoch(loader)
                {after}

        @torch.no_grad()
        def validate(self, val):
            return [self.model(x).argmax(1) for x, _ in val]
'''


def test_training_left_by_a_step_method_is_absorbed_when_its_callers_switch_back() -> None:
    facts = facts_of(TRAINER.format(after="self.model.eval(); self.validate(val)"))
    validate = next(f for f in facts.collector.functions if f.name == "validate")
    assert facts.flow.objects.left_in_training(validate, "self.model") is None


def test_an_entry_point_that_leaves_training_reaches_the_public_methods() -> None:
    facts = facts_of(TRAINER.format(after="pass"))
    validate = next(f for f in facts.collector.functions if f.name == "validate")
    found = facts.flow.objects.left_in_training(validate, "self.model")
    assert found is not None and found[0] == "train_epoch"


# -- regions.py / phases.py ---------------------------------------------------------------------------

def test_grad_free_regions_and_phase_loops() -> None:
    facts = facts_of('''
        import torch

        def run(model, loaders, opt):
            for phase in ("train", "val"):
                if phase == "train":
                    model.train()
                else:
                    model.eval()
                with torch.set_grad_enabled(phase == "train"):
                    for x, y in loaders[phase]:
                        out = model(x)
                        if phase == "train":
                            out.sum().backward()
                            opt.step()
    ''')
    by_phase = {f.phase[-1][1]: f for flow in facts.flow.flows for f in flow.all_forwards() if f.phase}
    assert by_phase["train"].mode.definitely_train and by_phase["val"].mode.definitely_eval


# -- callgraph.py: what an optimizer built here steps; gradient transforms ------------------------------

def test_optimizers_built_here_say_what_they_train() -> None:
    facts = facts_of('''
        import torch

        class Explainer(torch.nn.Module):
            def explain(self, model, x):
                optimizer = torch.optim.Adam(self.parameters(), lr=0.01)
                extra = torch.optim.RMSprop([self.temperature], lr=0.01)

        def fit(model, params):
            opt = torch.optim.SGD(params, lr=0.1)

        def fine_tune(model):
            opt = torch.optim.AdamW(model.encoder.parameters())
    ''')
    functions = {f.name: f for f in facts.collector.functions}
    assert facts.flow.optimized_here(functions["explain"]) == {"self", "self.temperature"}
    assert facts.flow.optimized_here(functions["fit"]) is None  # a list built elsewhere: anything
    assert facts.flow.optimized_here(functions["fine_tune"]) == {"model", "model.encoder"}


def test_a_frozen_model_behind_a_trained_explainer_is_not_assumed_in_training() -> None:
    facts = facts_of('''
        import torch

        def explain(model, x, mask, target):
            optimizer = torch.optim.Adam([mask], lr=0.01)
            for _ in range(10):
                loss = torch.nn.functional.cross_entropy(model(x * mask), target)
                loss.backward()
                optimizer.step()
    ''')
    assert not facts.flow.assumed_sites  # the model's output reaches the backward, but only the mask is stepped


def test_an_optimizer_from_a_method_of_the_same_object_trains_self() -> None:
    facts = facts_of('''
        import torch

        class Classifier(torch.nn.Module):
            def _make_optimizer(self):
                return torch.optim.Adam(self.parameters())

            def fit(self, loader, loss_fn):
                optimizer = self._make_optimizer()
                for x, y in loader:
                    loss = loss_fn(x, y)
                    loss.backward()
                    optimizer.step()
    ''')
    functions = {f.name: f for f in facts.collector.functions}
    assert facts.flow.optimized_here(functions["fit"]) == {"self"}
    assert facts.flow.assumed_sites  # the loss comes from a callable, but the optimizer steps `self`


def test_a_method_left_to_subclasses_is_abstract() -> None:
    facts = facts_of('''
        import abc
        import torch

        class Base(torch.nn.Module):
            def predict_proba(self, x):
                """Soft labels."""
                raise NotImplementedError("subclasses")

            @abc.abstractmethod
            def encode(self, x):
                ...

            def reset(self):
                pass

            def check(self, x):
                if x is None:
                    raise NotImplementedError
                return x
    ''')
    abstract = {f.name: f.is_abstract for f in facts.collector.functions}
    assert abstract == {"predict_proba": True, "encode": True, "reset": False, "check": False}


def test_a_helper_switching_each_model_of_a_list_by_a_named_phase() -> None:
    facts = facts_of('''
        def set_mode(mode, models):
            for m in models:
                if m is None:
                    continue
                if mode == "train":
                    m.train()
                if mode == "eval":
                    m.eval()
    ''')
    summary = facts.flow.summaries["set_mode"]
    assert summary.phase_param == "mode"
    assert summary.phase_effects["eval"][0] == {"models[]": "eval"}
    assert summary.phase_effects["train"][0] == {"models[]": "train"}


def test_a_loop_over_a_tuple_of_models_switches_each() -> None:
    facts = facts_of('''
        import torch.nn as nn

        def run(loader):
            encoder, head = nn.Dropout(0.1), nn.BatchNorm1d(4)
            for m in (encoder, head):
                m.eval()
            for x in loader:
                head(encoder(x))
    ''')
    modes = {f.key: f.mode for flow in facts.flow.flows for f in flow.all_forwards()}
    assert modes["encoder"].definitely_eval and modes["head"].definitely_eval


def test_a_context_manager_switching_in_its_yield_under_no_grad() -> None:
    facts = facts_of('''
        from contextlib import contextmanager
        import torch

        @contextmanager
        def eval_mode(*nets):
            training = [n for n in nets if n.training]
            try:
                with torch.no_grad():
                    yield [n.eval() for n in nets]
            finally:
                for n in training:
                    n.train()
    ''')
    summary = facts.flow.summaries["eval_mode"]
    assert (summary.context_mode, summary.context_grad) == ("eval", "free")


def test_gradient_transforms_mark_input_gradients() -> None:
    facts = facts_of('''
        from torch.autograd.functional import jacobian

        def influence(model, x):
            def f(features):
                return model(features)
            return jacobian(f, x).abs().sum()
    ''')
    influence = next(f for f in facts.collector.functions if f.name == "influence")
    assert facts.uses_input_gradients(influence)
    summary = facts.flow.summaries.get("influence")
    assert summary is None or all(u.intent == "training" for u in summary.forwards)


def test_helpers_that_only_evaluate_what_they_are_given() -> None:
    facts = facts_of('''
        import torch
        from torchvision.utils import save_image

        def save_grid(samples, path):
            save_image(samples.detach().clamp(-1, 1), path)

        def accuracy(logits, labels):
            return (logits.argmax(1) == labels).float().mean().item()

        def keep(out, bucket):
            bucket.store = out

        def sample(gen, z, y):
            save_grid(gen(z), "grid.png")
            print(accuracy(gen(z), y))
    ''')
    summaries = facts.flow.summaries
    assert "samples" in summaries["save_grid"].evaluates
    assert summaries["accuracy"].evaluates == ["logits", "labels"]
    assert "keep" not in summaries or summaries["keep"].evaluates == []
    intents = [f.intent for f in forwards(facts).values()]
    assert intents == ["evaluation", "evaluation"]  # a saved grid, a printed accuracy


# -- batches.py, mode_handling.py ----------------------------------------------------------------

def test_forward_over_destructured_batches() -> None:
    from modelint.facts.batches import over_batches

    facts = facts_of("""
        import torch

        def score(model, loader, hook, frames):
            for x, y in loader:
                x = torch.as_tensor(x).to("cpu")
                out = model(x)
                hook(out)
            for i, item in enumerate(loader):
                model(item[0]), item[1]
            for i, t in enumerate(frames):
                hook(t)
            for batch in loader:
                model(batch)
    """)
    found = {line: over_batches(facts, f) for line, f in forwards(facts).items()}
    assert found.get(7) is True  # `x, y`, x prepared by library calls
    assert found.get(8) is not True  # another forward's output
    assert found.get(10) is True  # item[0] and item[1]: taken apart by index
    assert found.get(12) is not True  # an enumerate index and one value
    assert found.get(14) is not True  # a batch never taken apart


def test_functions_and_classes_that_handle_modes() -> None:
    from modelint.facts.mode_handling import class_sets_own_mode, minds_modes, optional_or_callable

    facts = facts_of('''
        from typing import Callable, Optional
        import torch.nn as nn

        def a(model, loader):
            """Accuracy; the caller puts `model` in eval mode."""

        def b(model, loader):
            model.eval

        def c(model, callback=None, fn: Optional[Callable] = None, net=None):
            pass

        class Head(nn.Module):
            def fit(self):
                self.train()

        class Other(nn.Module):
            def predict(self, x):
                return self(x)
    ''')
    functions = {f.name: f for f in facts.collector.functions}
    assert minds_modes(functions["a"]) and minds_modes(functions["b"]) and not minds_modes(functions["c"])
    assert optional_or_callable(facts, functions["c"], "callback")
    assert optional_or_callable(facts, functions["c"], "fn")
    assert not optional_or_callable(facts, functions["c"], "model")
    assert class_sets_own_mode(facts, functions["fit"].cls)
    assert not class_sets_own_mode(facts, functions["predict"].cls)


def test_builder_functions_and_what_a_module_may_sample() -> None:
    facts = facts_of("""
        import torch.nn as nn
        import torch.nn.functional as F

        def conv_bn(c_in, c_out):
            layers = [nn.Conv2d(c_in, c_out, 3)]
            layers.append(nn.BatchNorm2d(c_out))
            return nn.Sequential(*layers)

        def head(c):
            return nn.Sequential(nn.Linear(c, c), nn.Dropout(0.1))

        class Normed(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(conv_bn(3, 8), conv_bn(8, 8))

        class Sampled(Normed):
            def __init__(self):
                super().__init__()
                self.head = head(8)

        class Gated(nn.Module):
            def forward(self, x):
                return F.dropout(x, 0.5, self.training)

        a, b, c = Normed(), Sampled(), Gated()
        """)
    modules = facts.modules
    classes = {info.name: info for info in facts.collector.classes}
    # A layer made by a function of the file counts, even through a list spread into a container.
    assert modules.class_dependence(classes["Normed"]) is Dependence.DEPENDENT
    calls = [site.node for site in facts.collector.calls
             if isinstance(site.node.func, cst.Name) and site.node.func.value in classes]
    sampled = {node.func.value: modules.kinds.may_sample(node) for node in calls}
    assert sampled == {"Normed": False, "Sampled": True, "Gated": True}


def test_module_classes_without_weights() -> None:
    facts = facts_of("""
        import torch
        import torch.nn as nn

        class DiceLoss(nn.Module):
            def __init__(self, smooth=1.0):
                super().__init__()
                self.smooth = smooth
                self.edges = torch.linspace(0, 1, 11)

            def forward(self, logits, target):
                return 1 - (2 * (logits * target).sum() + self.smooth) / (logits + target).sum()

        class Scaled(DiceLoss):
            pass

        class Temperature(nn.Module):
            def __init__(self):
                super().__init__()
                self.t = nn.Parameter(torch.ones(1))

        class Holder(nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

        class Headed(nn.Module):
            def __init__(self):
                super().__init__()
                self.head = nn.Linear(4, 2)

        class Stub(nn.Module):  # an exercise's model, layers still to write: one input, not a loss
            def forward(self, x):
                return x
        """)
    classes = {info.name: info for info in facts.collector.classes}
    weightless = {name: facts.modules.kinds.holds_no_weights(info) for name, info in classes.items()}
    assert weightless == {"DiceLoss": True, "Scaled": True, "Temperature": False, "Holder": False, "Headed": False,
                          "Stub": False}


def test_phase_parameters_frozen_models_grad_wrappers_and_bound_names() -> None:
    from modelint.facts.freezing import frozen_models
    from modelint.facts.phases import phase_parameter
    from modelint.facts.regions import grad_wrappers

    facts = facts_of("""
        import torch
        from .stuff import *

        def nograd(fn):
            def run(*args, **kwargs):
                with torch.no_grad():
                    return fn(*args, **kwargs)
            return run

        def run_epoch(model, loader, is_train, verbose=False):
            if verbose:
                print("epoch")
            if is_train:
                model.train()
            for x, y in loader:
                loss = model(x).sum()
                if is_train:
                    loss.backward()

        def step(model, batch, phase):
            if phase == "train":
                model.train()
            elif phase == "val":
                model.eval()

        def report(model, verbose):
            if verbose:
                print(model)

        def freeze(net):
            for name, p in net.named_parameters():
                p.requires_grad = False
            net.head.requires_grad_(False)
        """)
    functions = {f.name: f for f in facts.collector.functions}
    assert phase_parameter(functions["run_epoch"]) == ("is_train", (True, False))  # not `verbose`
    assert phase_parameter(functions["step"]) == ("phase", ("train", "val"))
    assert phase_parameter(functions["report"]) is None
    assert frozen_models(facts) == {"net"}
    assert grad_wrappers(facts.collector) == {"nograd"}
    assert facts.bound_names is None  # a star import may bind any name
    assert "mode" not in facts_of("model = 1\n").bound_names


def test_optimizers_by_binding_trained_models_and_one_finding_per_block() -> None:
    from modelint.engine import lint_source
    from modelint.registry import rule_codes

    facts = facts_of("""
        import torch, somelib
        net = somelib.Pipeline(somelib.Featurizer(), somelib.Head())
        AdamW = torch.optim.AdamW(somelib.params_of(net))
        sched = torch.optim.lr_scheduler.StepLR(AdamW, 10)

        def fit(loader):
            for x, y in loader:
                loss = ((net(x) - y) ** 2).mean()
                loss.backward()
                AdamW.step()
                sched.step()
    """)
    assert facts.flow.is_optimizer("AdamW") and not facts.flow.is_optimizer("sched")
    fit = next(f for f in facts.collector.functions if f.name == "fit")
    assert facts.flow.is_trained_model(fit, "net") and facts.flow.is_trained_model(None, "net")
    assert not facts.flow.is_trained_model(fit, "loss")
    # Two forwards of one model in one evaluation block: one finding, which shows the second as a note.
    source = textwrap.dedent("""
        import torch

        def validate(model: torch.nn.Module, pairs):
            model.eval()
            scores = []
            for a, b in pairs:
                fa = model(a)
                fb = model(b)
                scores.append(torch.cosine_similarity(fa, fb).mean().item())
            return scores
    """)
    result = lint_source(source, "validate.py", frozenset(rule_codes()))
    found = [f for f in result.findings if f.code == "MDL002"]
    assert [f.location.row for f in found] == [8]
    assert 9 in {r.location.row for r in found[0].related}


def test_what_a_class_on_a_base_elsewhere_is_without_asking_the_index() -> None:
    facts = facts_of("""
        import torch
        from .base import BaseModel, BaseTrainer, Interface
        from keras.layers import Layer

        class Classifier(BaseModel):
            def __init__(self, encoder):
                super().__init__()
                self.encoder = encoder

            def forward(self, x):
                return self.encoder(x)

        class Trainer(BaseTrainer):
            def fit(self, loader):
                self.model.train()

        class Backend(Interface):
            def __init__(self, path):
                self.net = torch.jit.load(path)
                self.net.eval()

            def __call__(self, x):
                return self.net(x)

        class Dense(Layer):
            def call(self, x):
                return self.kernel(x)
    """, path="pkg/models.py")
    classes = facts.modules.classes
    objects = facts.flow.objects
    assert facts.flow.defines_forward(classes["Classifier"]) and not objects.plain_object(classes["Classifier"])
    assert objects.plain_object(classes["Trainer"]) and objects.plain_object(classes["Backend"])
    assert objects.plain_object(classes["Dense"])  # a Keras layer is no torch module
    # Only the classes whose answer could matter were asked about (none of these: no index, nothing to ask).
    assert "keras.layers.Layer" not in facts.receivers.unresolved
    assert ".base.BaseModel" not in facts.receivers.unresolved


def test_a_file_of_another_framework_is_checked_for_syntax_only() -> None:
    from modelint.engine import lint_source
    from modelint.registry import rule_codes

    body = """
        class Head(keras.layers.Layer):
            def call(self, x, training=False):
                return self.dropout(self.dense(x), training=training)

        def evaluate(model, batches):
            return [model(x) for x in batches]
    """
    keras_only = textwrap.dedent("import tensorflow as tf\nfrom tensorflow import keras\n" + textwrap.dedent(body))
    both = textwrap.dedent("import torch\nimport tensorflow as tf\nfrom tensorflow import keras\n" + textwrap.dedent(body))
    codes = frozenset(rule_codes())
    assert lint_source(keras_only, "modeling_tf_head.py", codes).summary is None
    assert lint_source(both, "convert_head.py", codes).summary is not None
    broken = lint_source("import jax\ndef f(:\n", "broken.py", codes)
    assert not broken.checked  # a syntax error is still reported


def test_a_model_carried_in_a_container_its_caller_fills() -> None:
    from modelint.facts.names import any_element, key_root, value_key

    assert key_root("args[]") == "args" and key_root("model.encoder") == "model" and key_root("a[].b") == "a"
    assert value_key(cst.parse_expression('args["model"]')) == "args['model']"  # a named element, kept apart
    assert value_key(cst.parse_expression("models[k]")) == "models[]"  # any other index: one abstract element
    assert value_key(cst.parse_expression('m["a b"]')) == "m[]"
    assert any_element("args['model']") == "args[]" and any_element("args[]") is None
    # What the caller passed is one object on every path: what one path proved of it holds after a join.
    trained = ModeFact(certain=True).switched("train", None)
    assert ENTRY_MODE.join(trained).certain and trained.join(ENTRY_MODE).certain
    assert not ModeFact(certain=False).switched("train", None).join(trained).certain
    facts = facts_of("""
        import torch
        import torch.nn.functional as F

        def score(args):
            model = args["model"]
            with torch.no_grad():
                return [model(x).argmax(1) for x in args["loader"]]

        def fit(args):
            net, opt = args["net"], args["opt"]
            for x, y in args["loader"]:
                loss = F.cross_entropy(net(x), y)
                loss.backward()
                opt.step()
            ctx = {"loader": args["val"]}
            ctx["model"] = net
            return score(ctx)
    """)
    found = forwards(facts)
    assert found[8].key == "args['model']"  # an element of a container the caller passes is followed
    summary = facts.flow.summaries["score"]
    assert [use.param for use in summary.forwards] == ["args['model']"]  # ... and handed back to the callers
    helper = found[18]  # the caller's container holds the trained model, in training mode
    assert helper.key == "ctx['model']" and helper.via is not None and helper.mode.train_sites
    # A cast of the output (`.type(torch.DoubleTensor)`) is the output still: the loss it feeds is fed.
    cast = facts_of("""
        import torch

        def fit(args):
            model, criterion, opt = args["model"], args["criterion"], args["opt"]
            for x, y in args["loader"]:
                loss = criterion(model(x).type(torch.DoubleTensor), y)
                loss.backward()
                opt.step()
    """)
    loss_forward = forwards(cast)[7]  # (the criterion's: the last forward of the line)
    assert loss_forward.key == "args['criterion']" and loss_forward.fed and not loss_forward.mode.certain


# -- module_names.py: a parameter every call fills with a module --------------------------------------------

def test_a_parameter_every_call_fills_with_a_module_is_one() -> None:
    facts = facts_of("""
        import torch.nn as nn

        def run(net, x):
            return net.predict_step(x)

        def score(loss_fn, out, y):
            return loss_fn(out, y)

        def opaque(thing, x):
            return thing.forward_features(x)

        model = Net()
        model.eval()
        criterion = nn.CrossEntropyLoss()
        run(model, 1)
        score(criterion, 1, 2)
        opaque(model, 1)
        opaque(make_something(), 1)
    """)
    functions = {f.name: f for f in facts.flow.collector.functions}
    names = facts.modules.names
    assert names.is_module_name("net", functions["run"])  # `model.eval()` shows the caller's is one
    assert not names.is_module_name("loss_fn", functions["score"])  # a loss: a module with nothing to evaluate
    assert not names.is_module_name("thing", functions["opaque"])  # one call passes something unknown


def test_an_attribute_that_wraps_another_is_another_name_for_it() -> None:
    facts = facts_of("""
        import torch.nn as nn

        class Learner:
            def __init__(self, opt):
                self.network = Net(opt)
                self.mnetwork = nn.DataParallel(self.network) if opt.multi_gpu else self.network
                self.head = Head() if opt.head else self.network

            def predict(self, x):
                self.network.eval()
                out = self.mnetwork(x)
                return self.head(out).argmax(1)
    """)
    seen = forwards(facts)
    assert seen[12].key == "self.network" and seen[12].mode.definitely_eval  # DataParallel(self.network) or itself
    assert seen[13].key == "self.head"  # sometimes another module: a name of its own


def test_an_object_built_with_a_model_holds_that_very_model() -> None:
    facts = facts_of("""
        import torch

        class Scorer:
            def __init__(self, lm, limit):
                self.lm = lm
                self.limit = limit

            def score(self, x):
                return self.lm(x[: self.limit])

        def main(x):
            lm = LM()
            scorer = Scorer(lm, 8)
            lm.eval()
            first = scorer.score(x)
            scorer.lm = LM()
            second = scorer.score(x)
    """)
    seen = forwards(facts)
    assert seen[16].key == "lm" and seen[16].mode.definitely_eval  # `scorer.lm` is `lm`, switched after
    assert seen[18].key == "scorer.lm" and not seen[18].mode.eval_sites  # rebound: a model of its own
    state = State({"lm": ModeFact()}, GRAD_ENABLED, aliases={"scorer.lm": "lm"})
    assert state.canonical("scorer.lm.encoder") == "lm.encoder"
    state.forget("scorer")
    assert state.canonical("scorer.lm") == "scorer.lm"


def test_state_join_and_summary_effects_do_not_depend_on_the_hash_seed() -> None:
    from modelint.facts.summary_effects import _effect_targets

    # What a helper leaves: `self` as a whole may change (havoc), `self.model` surely ends in eval mode. The
    # general effect comes first and the specific one refines it, whatever order the summary's dict has.
    effects = {"self.model": "eval", "self": "unknown"}
    order = [key for _param, _effect, key in _effect_targets(effects, {"self": "self"}, {})]
    assert order == ["self", "self.model"]
    a = State({"b": ENTRY_MODE, "a": ENTRY_MODE}, GRAD_ENABLED)
    b = State({"c": ENTRY_MODE, "a": ENTRY_MODE}, GRAD_ENABLED)
    assert list(join(a, b).models) == ["b", "a", "c"]  # a's keys in a's order, then b's new ones


# -- registries.py ------------------------------------------------------------------------------

def test_registry_dict_of_module_classes_builds_a_module() -> None:
    facts = facts_of('''
        import torch.nn as nn

        class Small(nn.Module):
            def __init__(self, n):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(n, n), nn.Dropout(0.1))

        ARCHS = {"small": Small, "linear": nn.Linear}
        LOSSES = {"ce": nn.CrossEntropyLoss, "data": dict}

        def build(cfg):
            return ARCHS[cfg["arch"]](cfg["n"])
    ''')
    assert set(facts.modules.registries) == {"ARCHS"}  # (LOSSES holds `dict`: not every value names a class)
    built = [facts.modules.construction(site.node) for site in facts.collector.calls
             if type(site.node.func) is cst.Subscript]
    assert len(built) == 1 and built[0] is not None and built[0].dependence is Dependence.DEPENDENT


# -- mode_contexts.py ---------------------------------------------------------------------------

def test_library_eval_mode_context_switches_and_turns_off_autograd() -> None:
    facts = facts_of('''
        import torch.nn as nn
        from monai.networks.utils import eval_mode

        def validate(net, batches):
            net.train()
            with eval_mode(net):
                return [net(x).argmax(1) for x in batches]
    ''')
    forward = forwards(facts)[8]
    assert forward.mode.definitely_eval and forward.grad.definitely_free


def test_a_model_loaded_whole_over_one_built_here_is_that_kind_of_model_and_training_decides_its_mode() -> None:
    facts = facts_of("""
        import torch
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8))

            def forward(self, x):
                return self.body(x)

        def main(resume, train_loader, test_loader):
            model = Net()
            if resume:
                model = torch.load(resume)
            before = model(test_loader)
            for x in train_loader:
                loss = model(x).sum()
                loss.backward()
                opt.step()
            after = model(test_loader)
    """)
    seen = forwards(facts)
    # The pickled copy keeps the built model's kind; its mode, the one it was saved in, is unknown ...
    assert seen[17].mode.entry and seen[17].mode.certain and seen[17].mode.undecided
    assert seen[17].mode.dependence is Dependence.DEPENDENT
    # ... until the training here says which (training in eval mode would be the bug; the loop may not run,
    # and then it is the mode a function that trains it expects).
    assert effective_mode(facts, seen[22]).definitely_train
    assert not ModeFact(entry=True, eval_sites=frozenset({"eval()"})).undecided


def test_a_closure_free_name_bound_to_a_loss_module_runs_no_model() -> None:
    facts = facts_of("""
        import torch.nn as nn

        def train(features, labels, optimizer_fn):
            net = nn.Sequential(nn.Linear(4, 1))
            loss = nn.MSELoss()
            optimizer = optimizer_fn(net.parameters())

            def eval_loss():
                return loss(net(features).view(-1), labels).item() / 2

            return eval_loss()
    """)
    seen = forwards(facts)
    assert seen[10].key == "loss" and seen[10].mode.parameterless  # the enclosing function's MSELoss


# -- branches.py: what each side of an `if` knows ---------------------------------------------------

def test_a_guard_on_the_models_own_flag_leaves_it_in_training_mode_on_both_paths() -> None:
    facts = facts_of("""
        import torch.nn.functional as F

        class Runner:
            def train_step(self, x, y):
                if not self.net.training:
                    self.net.train()
                loss = F.mse_loss(self.net(x), y)
                return loss.item()
    """)
    [forward] = forwards(facts).values()
    assert forward.mode.definitely_train  # (the fall-through knows the flag was already True)


# -- caller_entry.py: what a function starts with, from its calls here ------------------------------

def test_a_private_method_starts_in_the_mode_its_callers_set() -> None:
    facts = facts_of("""
        import torch

        class Scorer:
            def score(self, loader):
                self.net.eval()
                with torch.no_grad():
                    out = [self._batch(x) for x in loader]
                self.net.train()
                return out

            def _batch(self, x):
                return self.net(x).argmax(1).tolist()
    """)
    function = next(f for f in facts.collector.functions if f.name == "_batch")
    assert facts.flow.mode_from_callers(function, "self.net").definitely_eval
    public = next(f for f in facts.collector.functions if f.name == "score")
    assert facts.flow.mode_from_callers(public, "self.net") is None  # (its callers are the object's users)


def test_a_method_parameter_every_own_call_binds_to_an_attribute_is_that_attribute() -> None:
    facts = facts_of("""
        import copy

        class Predictor:
            def score(self, loader, model):
                model.eval()
                return [self.model(x) for x in loader]

            def check(self, loader, model):
                model.eval()
                return [self.model(x) for x in loader]

            def fit(self, loader):
                best = copy.deepcopy(self.model)
                self.score(loader, self.model)
                self.model = best
                self.score(loader, best)
                best = other()
                self.check(loader, best)
                self.check(loader, self.model)
    """)
    flow = facts.flow
    functions = {f.name: f for f in flow.collector.functions}

    def held(name: str) -> dict:
        function = functions[name]
        return flow.free.parameters_holding_attributes(function, flow._calls_of[function],
                                                       lambda c: flow.site_of_call[c].site.function)

    assert held("score") == {"model": "self.model"}  # `best` is handed right after `self.model = best`
    assert held("check") == {}  # `best` bound again since it became `self.model`


# -- object_orders.py ---------------------------------------------------------------------------


def test_a_script_shows_the_orders_it_runs_the_methods_of_objects_it_builds() -> None:
    from modelint.facts.object_orders import object_orders

    facts = facts_of("""
        from .gan import GAN
        from .learner import Learner
        from .runner import Runner

        def main(args):
            gan = None
            gan = GAN(args)
            if args.train:
                gan.train(args.loader)
            else:
                gan.sample(args.checkpoint)
            learner = Learner()
            for epoch in range(3):
                learner.fit(args.x)
                learner.predict(args.x)
            runner = Runner()
            runner.setup()
            launch(runner)
        """)
    orders = object_orders(facts.flow)
    assert orders[".gan.GAN"] == frozenset()  # two branches of one `if`: neither runs after the other
    assert orders[".learner.Learner"] == {("fit", "predict"), ("predict", "fit"), ("fit", "fit"),
                                          ("predict", "predict")}  # (a loop: every order)
    assert orders[".runner.Runner"] is None  # handed to a call: its users are out of sight


def test_an_object_built_anew_each_round_of_a_loop_runs_its_methods_in_written_order_only() -> None:
    from modelint.facts.object_orders import handed_methods, object_orders

    facts = facts_of("""
        from .trainers import UNetTrainer

        def run(splits, loaders):
            for split in splits:
                trainer = UNetTrainer(split)
                trainer.train(loaders[split], epoch_run=trainer.epoch_ce_loss)
                print(trainer.test(loaders[split]))
        """)
    assert object_orders(facts.flow)[".trainers.UNetTrainer"] == {("train", "test")}
    assert handed_methods(facts.flow) == {".trainers.UNetTrainer": frozenset({"epoch_ce_loss"})}


# -- phases.py: a script's phase flag ------------------------------------------------------------


def test_a_script_given_its_phase_runs_once_per_phase() -> None:
    from modelint.facts.phases import script_phase

    facts = facts_of("""
        import sys
        phase = sys.argv[1]
        for x, y in batches:
            loss = criterion(model(x), y)
            if phase == "train":
                loss.backward()
        """)
    flow = facts.flow
    assert script_phase(facts.collector.module_phases, lambda: flow._scope_bindings(None)) == \
        ("phase", ("train", "<other>"))
    facts = facts_of("""
        phase = "train"
        for x, y in batches:
            loss = criterion(model(x), y)
            if phase == "train":
                loss.backward()
        """)
    # (a literal the script sets itself: nothing to run twice)
    assert script_phase(facts.collector.module_phases, lambda: facts.flow._scope_bindings(None)) is None


# -- definitions.py: the definition in force at a call ------------------------------------------


def test_a_call_runs_the_definition_of_its_name_in_force_there() -> None:
    facts = facts_of("""
        def main():
            step()

        def step():
            return 1

        step()

        def step():
            return 2

        step()

        def later():
            step()

        class Net:
            def forward(self, x):
                return x

            def forward(self, x):
                return -x

        if fast:
            def pick(): return 1
        else:
            def pick(): return 2
        """)
    definitions = facts.collector.definitions
    calls = [site for site in facts.collector.calls if site.text == "step"]
    by_caller = [(site.site.function.name if site.site.function else None,
                  facts.flow.local_callee(site.node, site.site.function)) for site in calls]
    # (main is written above every definition: the first one below it; the module-level calls the last
    # one above them; `later` the last one above it, which other files import under the plain name)
    assert by_caller == [("main", "step@1"), (None, "step@1"), (None, "step"), ("later", "step")]
    assert sorted(facts.flow.local_functions) == sorted(
        ["main", "step@1", "step", "later", "Net.forward@1", "Net.forward", "pick"])
    assert "pick" not in definitions.module_level  # (the branches of an `if` are alternatives)


# -- loops.py: the last pass of a loop ------------------------------------------------------------


def test_a_test_of_the_last_index() -> None:
    from modelint.facts.loops import last_index_test

    def holds(text: str) -> bool:
        return last_index_test(cst.parse_expression(text), "i")

    assert holds("i == len(steps) - 1") and holds("i + 1 == len(loader)") and holds("len(loader) - 1 == i")
    assert holds("i >= len(batches) - 1")
    assert not holds("i == len(steps)") and not holds("j == len(steps) - 1") and not holds("i % 100 == 0")
    assert not holds("i <= len(steps) - 1")


# -- flag_order.py: a flag normalised once, before its tests --------------------------------------


def test_a_flag_rebound_only_before_its_tests() -> None:
    from modelint.facts.flag_order import rebound_only_before

    facts = facts_of("""
        import argparse
        opt = argparse.ArgumentParser().parse_args()
        if opt.weight == 0:
            opt.use_head = False
        for epoch in range(3):
            if opt.use_head:
                pass
            if epoch == 1:
                opt.late = True
            if opt.late:
                pass
        def helper():
            opt.inner = True
        if opt.inner:
            pass
        if opt.after:
            pass
        opt.after = False
        """)
    tests = {dotted_test: node for node in facts.collector.module_node.body[3].body.body
             if type(node) is cst.If and (dotted_test := cst.Module([]).code_for_node(node.test))}
    flow = facts.flow
    assert rebound_only_before(flow, "opt.use_head", [tests["opt.use_head"]])
    assert not rebound_only_before(flow, "opt.late", [tests["opt.late"]])  # (rebound in the loop)
    module = facts.collector.module_node.body
    assert not rebound_only_before(flow, "opt.inner", [module[5]])  # (rebound in a function)
    assert not rebound_only_before(flow, "opt.after", [module[6]])  # (rebound after the test)
    assert rebound_only_before(flow, "opt.never", [module[6]])  # (only `opt = ...`, above)
    assert not rebound_only_before(flow, "opt.never", [module[1]])


# -- factory_constructions.py ------------------------------------------------------------------------

def test_a_factory_call_amounts_to_the_constructions_it_makes() -> None:
    from modelint.facts.factory_constructions import constructions_behind, factory_constructions

    facts = facts_of('''
        import torch.nn as nn

        class Small(nn.Module):
            def __init__(self, width, frozen=False):
                super().__init__()

        class Large(nn.Module):
            def __init__(self, width, frozen=False):
                super().__init__()

        def pick(name, frozen=False):
            if name == "small":
                model = Small(8, frozen=frozen)
            else:
                model = Large(64, frozen)
            return model.cpu()

        def with_loss(name, frozen):
            net = pick(name, frozen=frozen)
            return net, nn.MSELoss()

        def unknown(name):
            model = Small(8)
            model = load(model)
            for model in []:
                pass
            return model
    ''')
    made = factory_constructions(facts.flow)
    assert [c.reference for c in made["pick"][None]] == [":Small", ":Large"]
    assert made["with_loss"][0][0].reference == ":pick" and None not in made["with_loss"]
    assert "unknown" not in made  # (bound by a loop too: not one construction's)
    behind = constructions_behind(facts, call('with_loss("small", True)'))
    assert behind is None  # (the whole value is a tuple: no module of one construction)
    behind = constructions_behind(facts, call('pick("small", True)'))
    assert [local.name for local, *_ in behind] == ["Small", "Large"]
    rewritten = [cst.Module([]).code_for_node(made_call) for *_, made_call in behind]
    assert rewritten == ["_constructed_(8, frozen = True)", "_constructed_(64, True)"]
    default = constructions_behind(facts, call('pick("small")'))
    assert cst.Module([]).code_for_node(default[0][3]) == "_constructed_(8, frozen = False)"


# -- names.py: imports -------------------------------------------------------------------------------

def test_an_import_inside_a_function_binds_its_name_there_only() -> None:
    facts = facts_of('''
        from nets.plain import Actor

        def make_normalized():
            from nets.normalized import Actor
            return Actor(4, 2)

        def make_other():
            import nets.other as nets_other
            return nets_other.Actor(4, 2)

        top = Actor(4, 2)
    ''')
    qualified = {facts.positions[site.node].start.line: facts.imports.qualify(site.node.func)
                 for site in facts.collector.calls}
    assert qualified[6] == "nets.normalized.Actor"
    assert qualified[10] == "nets.other.Actor"
    assert qualified[12] == "nets.plain.Actor"  # (the module-level import, not the function's, outside it)


def test_a_schedule_named_for_evaluation_is_no_evaluation_data() -> None:
    from modelint.facts.naming import names_evaluation_data

    assert names_evaluation_data(cst.parse_expression("val_loader"))
    assert names_evaluation_data(cst.parse_expression('loaders["test"]'))
    for schedule in ("cfg.eval_every", "args.eval_interval", "num_eval_episodes", "test_size", "self.val_freq"):
        assert not names_evaluation_data(cst.parse_expression(schedule)), schedule


# -- reaching_calls.py ---------------------------------------------------------------------------
def test_a_call_reaches_only_the_branches_its_arguments_allow() -> None:
    from modelint.facts.reaching_calls import call_reaches, call_runs, reach_of

    facts = facts_of("""
        import torch

        def evaluate(model, loader, augment=False, step_fn=None):
            for x in loader:
                if augment:
                    out = model(x.flip(3))
                elif step_fn is not None:
                    out = step_fn(model, x)
                else:
                    out = model(x)

        def main(model, loader):
            evaluate(model, loader)
            evaluate(model, loader, augment=True)
            evaluate(model, loader, step_fn=lambda m, x: m(x))
            evaluate(model, loader, *extra)
    """)
    evaluate = next(f for f in facts.collector.functions if f.name == "evaluate")
    calls = [site.node for site in facts.collector.calls
             if type(site.node.func) is cst.Name and site.node.func.value == "evaluate"]
    sites = {facts.positions[site.node].start.line: site.site for site in facts.collector.calls
             if type(site.node.func) is cst.Name and site.node.func.value == "model"}
    flipped, plain = sites[7], sites[11]
    assert [call_reaches(evaluate, c, flipped) for c in calls] == [False, True, False, True]
    assert [call_reaches(evaluate, c, plain) for c in calls] == [True, False, False, True]
    reach = reach_of(evaluate, plain)  # (what a summary carries to the callers of other files)
    assert reach is not None and call_runs(reach, evaluate.params, False, calls[0])
    assert not call_runs(reach, evaluate.params, False, calls[2])


# -- optimized_scopes.py, loop_bindings.py: what a scope trains, what a loop's passes bind --------

def test_each_scope_says_which_models_its_optimizers_are_built_over() -> None:
    from modelint.facts.optimizers import MADE_TENSORS
    from modelint.facts.optimized_scopes import optimized_in_scope

    facts = facts_of('''
        import torch

        class Trainer:
            def __init__(self, net):
                self.net = net
                self.opt = torch.optim.Adam(net.parameters())

            def step(self, x):
                self.net(x).sum().backward()

        def invert(model, image):
            opt = torch.optim.Adam([image], lr=0.1)

        def fit(model, params):
            opt = torch.optim.SGD(params, lr=0.1)
    ''')
    functions = {f.name: f for f in facts.collector.functions}
    assert optimized_in_scope(facts, functions["step"]) == ({"self.net"}, True)  # (the constructor's, kept as self.net)
    assert optimized_in_scope(facts, functions["invert"]) == ({MADE_TENSORS}, True)
    assert optimized_in_scope(facts, functions["fit"]) == (set(), False)  # a list built elsewhere: anything


def test_names_a_loop_binds_anew_in_each_pass() -> None:
    from modelint.facts.loop_bindings import bound_in, input_names

    loop = cst.parse_statement(textwrap.dedent('''
        for _ in range(samples):
            for x, y in loader:
                h = encode(x)
            z = noise()
    '''))
    assert bound_in(loop) == {"_", "z"}  # (the inner loop replays the same batches every pass)
    assert input_names(call("model(x, mask=m[0])")) == {"x", "m"}
