"""Every fixture, both ways: each `# expect: CODE` line is reported with that code,
and nothing else is reported (clean fixtures have no annotation at all)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from modelint import engine
from modelint.config import ConfigResolver
from modelint.registry import all_rules
from modelint.runner import Overrides, run_paths

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
_EXPECT = re.compile(r"#\s*expect:\s*([A-Z0-9, ]+)")


def fixture_files() -> list[Path]:
    return sorted(p for p in FIXTURES.rglob("*.py"))


def expected(path: Path) -> Counter:
    out: Counter = Counter()
    for row, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = _EXPECT.search(line)
        if match:
            for code in match.group(1).split(","):
                if code.strip():
                    out[(row, code.strip())] += 1
    return out


_FOLDER_RESULTS: dict[Path, dict[str, Counter]] = {}


def lint(path: Path) -> Counter:
    """Findings for one fixture, from a run over its whole top-level folder.

    Fixtures are linted folder by folder, as a user would run modelint on a
    package, so helpers in one file and their callers in another meet.
    """
    folder = FIXTURES / path.relative_to(FIXTURES).parts[0]
    if folder not in _FOLDER_RESULTS:
        run = run_paths([str(folder)], ConfigResolver(), Overrides(), jobs=1)
        by_file: dict[str, Counter] = {}
        for finding in run.findings:
            key = str(Path(finding.path).resolve())
            by_file.setdefault(key, Counter())[(finding.location.row, finding.code)] += 1
        _FOLDER_RESULTS[folder] = by_file
    return _FOLDER_RESULTS[folder].get(str(path.resolve()), Counter())


def lint_alone(path: Path) -> Counter:
    result = engine.lint_path(str(path), frozenset(all_rules()))
    return Counter((f.location.row, f.code) for f in result.findings)


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixture(path: Path) -> None:
    want = expected(path)
    got = lint(path)
    missing = sorted(want - got)
    unexpected = sorted(got - want)
    assert not missing and not unexpected, f"missing={missing} unexpected={unexpected}"


def test_every_rule_has_buggy_and_clean_fixtures() -> None:
    for code, rule in all_rules().items():
        if not rule.fixtures:
            continue
        folder = FIXTURES / rule.fixtures
        assert folder.is_dir(), f"{code}: no fixtures folder {folder}"
        buggy = [p for p in folder.glob("*.py") if expected(p)]
        clean = [p for p in folder.glob("*.py") if not expected(p)]
        assert len(buggy) >= 3 and len(clean) >= 3, f"{code}: {len(buggy)} buggy, {len(clean)} clean fixtures"
        assert any(c == code for p in buggy for (_, c) in expected(p)), f"{code}: no line annotated with it"


def test_seed_mistakes_are_caught(tmp_path: Path) -> None:
    """The seed articles wrote `model.trian()` and `torch.zero_grad()`: both are MDL011."""
    trian = tmp_path / "trian.py"
    trian.write_text("import torch.nn as nn\nmodel = nn.Sequential(nn.Linear(4, 4), nn.Dropout())\nmodel.trian()\n")
    zero = tmp_path / "zero.py"
    zero.write_text("import torch\nwith torch.zero_grad():\n    pass\n")
    for path, row in ((trian, 3), (zero, 2)):
        assert (row, "MDL011") in lint_alone(path)


def test_cross_file_mdl003_note_points_at_helper() -> None:
    """train.py keeps training after helpers.evaluate() set eval(): the note names helpers.py's eval()."""
    package = FIXTURES / "cross_file" / "trainer_pkg"
    run = run_paths([str(package)], ConfigResolver(), Overrides(select=("MDL003",)), jobs=1)
    [finding] = run.findings
    assert finding.path.endswith("train.py") and finding.code == "MDL003"
    helpers = (package / "helpers.py").read_text().splitlines()
    [note] = finding.related
    assert note.path.endswith("helpers.py")
    assert "model.eval()" in helpers[note.location.row - 1]


def test_helper_guess_dropped_when_another_file_calls_it() -> None:
    """Alone, `top1()` has no caller in sight and is reported; with the package, run.py calls it after
    `model.eval()`, and that caller decides."""
    metrics = FIXTURES / "cross_file" / "scoring_pkg" / "metrics.py"
    alone = run_paths([str(metrics)], ConfigResolver(), Overrides(), jobs=1)
    assert [(f.code, f.location.row) for f in alone.findings] == [("MDL001", 10)]
    assert alone.findings[0].unless_called == "top1"
    whole = run_paths([str(metrics.parent)], ConfigResolver(), Overrides(), jobs=1)
    assert not [f for f in whole.findings if f.path.endswith("metrics.py")]


def test_callers_in_other_files_decide_the_grad_mode_of_a_helper() -> None:
    """`extract_features()` puts the model in eval mode itself and leaves autograd to its callers. Alone,
    no caller is seen: autograd is on. With benchmark.py, whose calls run under no_grad, it is clean;
    with export.py, which calls it with autograd on, it is reported with that caller as a note."""
    package = FIXTURES / "cross_file" / "features_pkg"
    features, benchmark, export = (str(package / name) for name in ("features.py", "benchmark.py", "export.py"))

    def found(*paths: str) -> list[tuple[str, int, str, tuple[str, ...]]]:
        run = run_paths(list(paths), ConfigResolver(), Overrides(), jobs=1)
        return [(Path(f.path).name, f.location.row, f.code, tuple(Path(r.path).name for r in f.related))
                for f in run.findings]

    assert found(features) == [("features.py", 11, "MDL002", ("features.py",))]
    assert found(features, benchmark) == []
    assert found(features, benchmark, export) == [("features.py", 11, "MDL002", ("export.py", "features.py"))]


def test_a_helper_evaluating_its_own_model_keeps_its_finding_when_another_file_calls_it(tmp_path: Path) -> None:
    """The caller in another file cannot judge a model it never sees: the helper's finding stays."""
    (tmp_path / "scoring.py").write_text(
        "import torch\nimport torch.nn as nn\n\n\ndef score(x):\n"
        "    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2))\n"
        "    net.load_state_dict(torch.load('net.pt'))\n    net.eval()\n    return net(x).argmax(1).tolist()\n")
    (tmp_path / "main.py").write_text("import torch\n\nfrom scoring import score\n\nprint(score(torch.randn(2, 4)))\n")
    run = run_paths([str(tmp_path)], ConfigResolver(), Overrides(), jobs=1)
    assert [(Path(f.path).name, f.location.row, f.code) for f in run.findings] == [("scoring.py", 9, "MDL002")]


def test_a_report_proved_from_another_file_merges_with_the_files_own() -> None:
    """The helper's own MDL002 (with its fix) and the one a caller in another file proves at the same
    forward (attached before its position was known) are printed once, with the caller's note."""
    from modelint.finding import Finding, Fix, Location, Related
    from modelint.runner import _merge_duplicates

    at = Location(317, 19)
    own = Finding("training.py", "MDL002", "missing-no-grad", "m", "warning", at, at, fix=Fix("decorate", ()))
    note = Related("report.py", Location(44, 25), "report() calls `test()` here with autograd on")
    proved = Finding("training.py", "MDL002", "missing-no-grad", "m", "warning", at, at, related=(note,))
    other = Finding("training.py", "MDL001", "missing-eval-mode", "m", "error", at, at)
    [first, second] = _merge_duplicates([proved, own, other])
    assert (first.code, first.fix, first.related) == ("MDL002", own.fix, (note,))
    assert second is other


def _found_in(folder: Path, *names: str) -> list[tuple[str, int, str]]:
    """(file name, row, code) of every finding of one run over these files of `folder`."""
    run = run_paths([str(folder / n) for n in names], ConfigResolver(), Overrides(), jobs=1)
    return [(Path(f.path).name, f.location.row, f.code) for f in run.findings]


def test_method_guess_dropped_when_other_files_call_that_method_only_under_no_grad(tmp_path: Path) -> None:
    """`Synth.infer()` has no caller in its file, so autograd is guessed on. The training script calls
    `generator.module.infer(x)` on a parameter it cannot place, under no_grad: that is taken as its
    caller. A second script calling `.infer()` with autograd on keeps the report."""
    (tmp_path / "models.py").write_text(
        "import torch.nn as nn\n\n\nclass Synth(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.enc = nn.Linear(4, 4)\n        self.dec = nn.Linear(4, 4)\n\n    def forward(self, x):\n"
        "        return self.dec(self.enc(x))\n\n    def infer(self, x):\n        steps = self.enc(x).argmax(-1)\n"
        "        return self.dec(x), steps\n")
    (tmp_path / "train.py").write_text(
        "import torch\n\n\ndef evaluate(generator, loader, writer):\n    with torch.no_grad():\n"
        "        for x in loader:\n            audio = generator.module.infer(x)\n            writer.add_audio('gen', audio)\n")

    def found(*names: str) -> list[tuple[str, int, str]]:
        return _found_in(tmp_path, *names)

    assert found("models.py") == [("models.py", 14, "MDL002")]
    assert found("models.py", "train.py") == []
    (tmp_path / "demo.py").write_text("import torch\n\n\ndef show(net, x):\n    print(net.infer(torch.as_tensor(x)))\n")
    assert found("models.py", "train.py", "demo.py") == [("models.py", 14, "MDL002")]


def test_model_on_a_base_class_of_another_file_is_as_mode_dependent_as_its_layers(tmp_path: Path) -> None:
    """net.py's `Net(BaseModule)`, the base an empty helper class in base.py: a Conv/LeakyReLU net evaluated
    in training mode in infer.py changes nothing (as when the base is in the same file); with a Dropout
    in the base, it does."""
    base = ("import torch.nn as nn\n\n\nclass BaseModule(nn.Module):\n    def nparams(self):\n"
            "        return sum(p.numel() for p in self.parameters())\n")
    (tmp_path / "base.py").write_text(base)
    (tmp_path / "net.py").write_text(
        "import torch.nn as nn\n\nfrom base import BaseModule\n\n\nclass Net(BaseModule):\n    def __init__(self):\n"
        "        super().__init__()\n        self.conv = nn.Conv1d(1, 1, 3, padding=1)\n"
        "        self.act = nn.LeakyReLU(0.2)\n\n"
        "    def forward(self, x):\n        return self.act(self.conv(x))\n")
    (tmp_path / "infer.py").write_text(
        "import torch\n\nfrom net import Net\n\nmodel = Net()\nmodel.load_state_dict(torch.load(\"ckpt.pt\"))\n"
        "with torch.no_grad():\n    print(model(torch.randn(1, 1, 16)).numpy())\n")
    assert _found_in(tmp_path, "infer.py", "net.py", "base.py") == []
    (tmp_path / "base.py").write_text(base.replace(
        "class BaseModule(nn.Module):\n", "class BaseModule(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.drop = nn.Dropout(0.1)\n\n"))
    assert _found_in(tmp_path, "infer.py", "net.py", "base.py") == [("infer.py", 8, "MDL001")]


def test_capitalised_builder_function_of_another_file_is_followed_as_a_factory(tmp_path: Path) -> None:
    """models.py's `def Encoder(...)` (named like a class) returns a Linear-only encoder: main.py's evaluation of
    what it built, in training mode, changes nothing; once the encoder has Dropout, it is reported."""
    models = ("import torch.nn as nn\n\n\nclass MLPEncoder(nn.Module):\n    def __init__(self, n_in, n_out):\n"
              "        super().__init__()\n        self.fc = nn.Linear(n_in, n_out)\n\n    def forward(self, x):\n"
              "        return self.fc(x).relu()\n\n\ndef Encoder(n_in, n_out):\n    return MLPEncoder(n_in, n_out)\n")
    (tmp_path / "models.py").write_text(models)
    (tmp_path / "main.py").write_text(
        "import torch\n\nfrom models import Encoder\n\nencoder = Encoder(8, 4)\n"
        "with torch.no_grad():\n    print(encoder(torch.randn(2, 8)).argmax(1))\n")
    assert _found_in(tmp_path, "main.py", "models.py") == []
    (tmp_path / "models.py").write_text(models.replace("return self.fc(x).relu()",
                                                       "return nn.functional.dropout(self.fc(x), 0.5, self.training)"))
    assert _found_in(tmp_path, "main.py", "models.py") == [("main.py", 7, "MDL001")]


def test_module_of_buffers_defined_in_another_file_runs_no_model(tmp_path: Path) -> None:
    """audio.py's `MelSpectrogram` keeps a window and a filterbank as buffers, no weights: scoring test
    clips with it in train.py records no graph worth reporting (as in one file). Once it learns a
    projection, the same evaluation without no_grad is reported."""
    audio = ("import torch\nimport torch.nn as nn\n\n\nclass MelSpectrogram(nn.Module):\n"
             "    def __init__(self, n_fft=1024, n_mels=80):\n        super().__init__()\n"
             "        self.register_buffer(\"window\", torch.hann_window(n_fft))\n"
             "        self.register_buffer(\"mel\", torch.rand(n_mels, n_fft // 2 + 1))\n        self.n_fft = n_fft\n\n"
             "    def forward(self, audio):\n"
             "        spec = torch.stft(audio, self.n_fft, window=self.window, return_complex=True).abs()\n"
             "        return torch.log(torch.clamp(self.mel @ spec, min=1e-5))\n")
    (tmp_path / "audio.py").write_text(audio)
    (tmp_path / "train.py").write_text(
        "import torch\n\nfrom audio import MelSpectrogram\n\n\ndef reference_mels(test_clips):\n"
        "    fft = MelSpectrogram().cuda()\n    mels = []\n    for clip in test_clips:\n"
        "        mels.append(fft(clip).cpu().numpy())\n    return mels\n")
    assert _found_in(tmp_path, "train.py", "audio.py") == []
    (tmp_path / "audio.py").write_text(audio.replace(
        "        self.n_fft = n_fft\n", "        self.n_fft = n_fft\n        self.proj = nn.Linear(n_mels, n_mels)\n"))
    assert _found_in(tmp_path, "train.py", "audio.py") == [("train.py", 10, "MDL002")]


def test_wrapper_of_a_loaded_model_defined_in_another_file_has_the_loaders_mode(tmp_path: Path) -> None:
    """detect.py builds `Backend(weights)` from models.py (summarised for it even when not asked for): a
    module that builds no layer and runs what its constructor loads is in the loader's mode. Once the
    wrapper builds a head with Dropout of its own, the evaluation in training mode is reported."""
    (tmp_path / "models.py").write_text(
        "import torch\nimport torch.nn as nn\n\nfrom loading import attempt_load\n\n\nclass Backend(nn.Module):\n"
        "    def __init__(self, weights):\n        super().__init__()\n        model = attempt_load(weights)\n"
        "        self.model = model\n\n    def forward(self, im):\n        return self.model(im)\n")
    (tmp_path / "detect.py").write_text(
        "import torch\n\nfrom models import Backend\n\n\n@torch.no_grad()\ndef run(weights, images):\n"
        "    model = Backend(weights)\n    for im in images:\n        print(model(im).argmax(1).tolist())\n")

    def found(*names: str) -> list[tuple[str, int, str]]:
        return _found_in(tmp_path, *names)

    assert found("detect.py") == found("detect.py", "models.py") == []
    models = (tmp_path / "models.py").read_text()
    (tmp_path / "models.py").write_text(models.replace(
        "        self.model = model\n", "        self.model = model\n        self.head = nn.Dropout(0.5)\n").replace(
        "return self.model(im)", "return self.head(self.model(im))"))
    assert found("detect.py") == [("detect.py", 10, "MDL001")]


def test_helper_of_another_file_back_propagating_the_loss_it_is_handed(tmp_path: Path) -> None:
    """train_utils.py's `batch_backward(info)` runs `info["loss"].backward()`: in executor.py the backward is the
    call, on the loss the loop computed; after `cv()` leaves the model in eval mode it trains in eval mode, until
    the loop puts it back in training mode."""
    (tmp_path / "train_utils.py").write_text(
        "def batch_backward(info, accum_grad=1):\n    (info[\"loss\"] / accum_grad).backward()\n    return info\n")
    executor = ("import torch\n\nfrom train_utils import batch_backward\n\n\n"
                "def train(model, optimizer, train_loader, cv_loader):\n    model.train()\n"
                "    for step, (x, y) in enumerate(train_loader):\n"
                "        info = {\"loss\": torch.nn.functional.cross_entropy(model(x), y)}\n"
                "        batch_backward(info)\n        optimizer.step()\n        optimizer.zero_grad()\n"
                "        if step % 100 == 0:\n            cv(model, cv_loader)\n\n\n"
                "def cv(model, cv_loader):\n    model.eval()\n    with torch.no_grad():\n"
                "        return sum(model(x).argmax(1).eq(y).sum().item() for x, y in cv_loader)\n")
    (tmp_path / "executor.py").write_text(executor)
    assert ("executor.py", 10, "MDL003") in _found_in(tmp_path, "executor.py", "train_utils.py")
    (tmp_path / "executor.py").write_text(executor.replace("cv(model, cv_loader)\n\n", "cv(model, cv_loader)\n"
                                                           "            model.train()\n\n"))
    assert _found_in(tmp_path, "executor.py", "train_utils.py") == []


def test_method_of_a_model_class_of_another_file_switches_its_receiver(tmp_path: Path) -> None:
    """model.py's `CRNN.predict()` calls `self.eval()`: train.py, which builds a CRNN and calls `model.predict(x)`
    after each step to log accuracy, trains the next batches in eval mode; with `model.train()` at the top of the
    step it does not."""
    (tmp_path / "model.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass CRNN(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.cnn = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU())\n"
        "        self.fc = nn.Linear(8, 37)\n\n    def forward(self, x):\n"
        "        return self.fc(self.cnn(x).mean((2, 3)))\n\n    def predict(self, x):\n        self.eval()\n"
        "        with torch.no_grad():\n            return self.forward(x).argmax(1)\n")
    train = ("import torch\n\nfrom model import CRNN\n\nmodel = CRNN()\noptimizer = torch.optim.Adam(model.parameters())\n"
             "model.train()\nfor images, labels in loader:\n    optimizer.zero_grad()\n"
             "    loss = torch.nn.functional.cross_entropy(model(images), labels)\n    loss.backward()\n"
             "    optimizer.step()\n    print((model.predict(images) == labels).float().mean().item())\n")
    (tmp_path / "train.py").write_text(train)
    assert ("train.py", 11, "MDL003") in _found_in(tmp_path, "train.py", "model.py")
    (tmp_path / "train.py").write_text(train.replace("    optimizer.zero_grad()\n",
                                                     "    model.train()\n    optimizer.zero_grad()\n"))
    assert _found_in(tmp_path, "train.py", "model.py") == []


def test_factory_of_another_file_returning_a_class_of_a_third(tmp_path: Path) -> None:
    """embed.py calls pretrain.py's `load_pretrained()`, which builds gin.py's GIN (Dropout, BatchNorm): the
    factory's summary needs gin.py, and embed.py needs the factory's; the embeddings computed in training
    mode are reported, and not once the script calls `model.eval()`."""
    (tmp_path / "gin.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass GIN(nn.Module):\n    def __init__(self, dim=16):\n"
        "        super().__init__()\n        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.Dropout(0.5))\n\n"
        "    def forward(self, x):\n        return torch.relu(self.mlp(x))\n")
    (tmp_path / "pretrain.py").write_text(
        "import torch\n\nfrom gin import GIN\n\n\ndef load_pretrained(path):\n    model = GIN()\n"
        "    model.load_state_dict(torch.load(path)['model_state_dict'])\n    return model\n")
    embed = ("import torch\n\nfrom pretrain import load_pretrained\n\nmodel = load_pretrained('gin.pth')\n"
             "with torch.no_grad():\n    embeddings = [model(x).mean(0) for x in loader]\n")
    (tmp_path / "embed.py").write_text(embed)
    assert ("embed.py", 7, "MDL001") in _found_in(tmp_path, "embed.py", "pretrain.py", "gin.py")
    (tmp_path / "embed.py").write_text(embed.replace("with torch", "model.eval()\nwith torch"))
    assert _found_in(tmp_path, "embed.py", "pretrain.py", "gin.py") == []


def test_own_inference_method_called_by_other_files_only_after_eval(tmp_path: Path) -> None:
    """gin.py's `Encoder.get_embeddings()` evaluates `self` and no method of Encoder calls `self.eval()`: alone it
    is reported. The training scripts call it as `model.encoder.get_embeddings(loader)` right after
    `model.eval()`: those are its callers, and the finding goes; one call without the switch keeps it."""
    (tmp_path / "gin.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass Encoder(nn.Module):\n    def __init__(self, dim=16):\n"
        "        super().__init__()\n        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim))\n\n"
        "    def forward(self, x):\n        return self.mlp(x)\n\n    def get_embeddings(self, loader):\n"
        "        ret = []\n        with torch.no_grad():\n            for x in loader:\n"
        "                ret.append(self.forward(x).cpu().numpy())\n        return ret\n")
    assert _found_in(tmp_path, "gin.py") == [("gin.py", 17, "MDL001")]
    train = ("import torch\n\n\ndef evaluate(model, loader):\n    model.eval()\n"
             "    emb = model.encoder.get_embeddings(loader)\n    return emb.mean()\n")
    (tmp_path / "train.py").write_text(train)
    assert _found_in(tmp_path, "gin.py", "train.py") == []
    (tmp_path / "probe.py").write_text("import torch\n\n\ndef probe(model, loader):\n"
                                       "    return torch.tensor(model.encoder.get_embeddings(loader))\n")
    assert _found_in(tmp_path, "gin.py", "train.py", "probe.py") == [("gin.py", 17, "MDL001")]


def test_checkpoint_helper_of_another_file_handed_the_optimizer_and_loss_is_no_update_step(tmp_path: Path) -> None:
    """util.py's `save_checkpoint(epoch, model, optimizer, loss, path)` only saves state dicts: called after
    val.py's helper left the model in eval mode (train() comes back before the next step), it trains nothing.
    A helper of that file that does step (`backward()` and `optimizer.step()`) is still an update step."""
    for name, text in {
        "val.py": "import torch\n\n\ndef test_single_volume(image, label, net):\n    net.eval()\n"
                  "    with torch.no_grad():\n        return (net(image).argmax(1) == label).float().mean().item()\n",
        "util.py": "import torch\n\n\ndef save_checkpoint(epoch, model, optimizer, loss, path):\n"
                   "    torch.save({'epoch': epoch, 'model': model.state_dict(), 'loss': loss.item()}, path)\n",
        "train.py": "import torch\n\nimport util\nfrom val import test_single_volume\n\n\n"
                    "def train(model, optimizer, loader, val_loader):\n    model.train()\n    best = 0.0\n"
                    "    for i, (x, y) in enumerate(loader):\n"
                    "        loss = torch.nn.functional.cross_entropy(model(x), y)\n        optimizer.zero_grad()\n"
                    "        loss.backward()\n        optimizer.step()\n        if i % 200 == 0:\n"
                    "            score = sum(test_single_volume(v, t, model) for v, t in val_loader)\n"
                    "            if score > best:\n                best = score\n"
                    "                util.save_checkpoint(i, model, optimizer, loss, 'best.pth')\n"
                    "            model.train()\n",
    }.items():
        (tmp_path / name).write_text(text)
    assert _found_in(tmp_path, "train.py", "util.py", "val.py") == []
    (tmp_path / "util.py").write_text(
        "def save_checkpoint(epoch, model, optimizer, loss, path):\n    loss.backward()\n    optimizer.step()\n")
    assert ("train.py", 19, "MDL003") in _found_in(tmp_path, "train.py", "util.py", "val.py")


def test_model_class_of_another_file_whose_forward_turns_autograd_off(tmp_path: Path) -> None:
    """vc.py's `DiffVC.forward` is decorated `@torch.no_grad()`: infer.py's call of a DiffVC it built records no
    graph. Without the decorator, the same script is reported."""
    model = ("import torch\nfrom torch import nn\n\n\nclass DiffVC(nn.Module):\n    def __init__(self):\n"
             "        super().__init__()\n        self.net = nn.Sequential(nn.Linear(80, 80), nn.SiLU(), nn.Linear(80, 80))\n\n"
             "    @torch.no_grad()\n    def forward(self, mel):\n        return self.net(mel)\n")
    (tmp_path / "vc.py").write_text(model)
    (tmp_path / "infer.py").write_text(
        "import torch\n\nfrom vc import DiffVC\n\ngenerator = DiffVC()\ngenerator.load_state_dict(torch.load('vc.pt'))\n"
        "generator = generator.cuda()\ngenerator.eval()\nmel = generator(torch.randn(1, 80).cuda())\n"
        "torch.save(mel.cpu(), 'out.pt')\n")
    assert _found_in(tmp_path, "infer.py", "vc.py") == []
    (tmp_path / "vc.py").write_text(model.replace("    @torch.no_grad()\n", ""))
    assert _found_in(tmp_path, "infer.py", "vc.py") == [("infer.py", 9, "MDL002")]


def test_volatile_input_unpacked_with_the_target_is_named_in_the_message(tmp_path: Path) -> None:
    """`data, target = Variable(data, volatile=True), Variable(target)`: the pre-0.4 idiom the author relied on
    is named in the finding, as for `data = Variable(data, volatile=True)`."""
    (tmp_path / "main.py").write_text(
        "import torch.nn.functional as F\nfrom torch.autograd import Variable\n\n\ndef test(model, test_loader):\n"
        "    model.eval()\n    correct = 0\n    for data, target in test_loader:\n"
        "        data, target = Variable(data, volatile=True), Variable(target)\n        output = model(data)\n"
        "        correct += output.data.max(1)[1].eq(target.data).sum()\n    return correct\n")
    run = run_paths([str(tmp_path / "main.py")], ConfigResolver(), Overrides(), jobs=1)
    [finding] = [f for f in run.findings if f.code == "MDL002"]
    assert finding.location.row == 10 and "volatile=True" in finding.message


def test_helper_of_a_star_imported_module_meets_its_caller(tmp_path: Path) -> None:
    """run_glue.py does `from util import *` and calls `do_eval(model, loader)` mid-epoch with the model in
    training mode: util.py's evaluation is reported with that caller; with `model.eval()` before the call, not."""
    (tmp_path / "util.py").write_text(
        "import torch\n\n\ndef do_eval(model, eval_dataloader):\n    correct = 0\n    for x, y in eval_dataloader:\n"
        "        with torch.no_grad():\n            correct += (model(x).argmax(-1) == y).sum().item()\n"
        "    return correct\n")
    run = ("import torch\nfrom torch import nn\nfrom util import *\n\n\n"
           "def main(model, optimizer, train_dataloader, eval_dataloader):\n    for epoch in range(3):\n"
           "        model.train()\n        for step, (x, y) in enumerate(train_dataloader):\n"
           "            nn.functional.cross_entropy(model(x), y).backward()\n            optimizer.step()\n"
           "            optimizer.zero_grad()\n            if step % 100 == 0:\n"
           "                print(do_eval(model, eval_dataloader))\n")
    (tmp_path / "run_glue.py").write_text(run)
    assert ("util.py", 8, "MDL001") in _found_in(tmp_path, "run_glue.py", "util.py")
    (tmp_path / "run_glue.py").write_text(run.replace("                print(do_eval", "                model.eval()\n"
                                                      "                print(do_eval"))
    assert ("util.py", 8, "MDL001") not in _found_in(tmp_path, "run_glue.py", "util.py")


def test_two_helpers_of_one_file_proved_by_a_caller_in_another_are_both_reported(tmp_path: Path) -> None:
    """main.py and base.py call evaluation helpers of update.py with autograd on: each helper's forward is
    reported once (their positions are looked up after the run, and neither may be taken for the other before)."""
    (tmp_path / "update.py").write_text(
        "import torch\n\n\nclass LocalUpdate:\n    def __init__(self, loader):\n        self.loader = loader\n\n"
        "    def inference(self, model):\n        model.eval()\n        correct = 0\n        for x, y in self.loader:\n"
        "            correct += (model(x).argmax(1) == y).sum().item()\n        return correct\n\n\n"
        "def test_inference(model, loader):\n    model.eval()\n"
        "    return sum((model(x).argmax(1) == y).sum().item() for x, y in loader)\n")
    (tmp_path / "main.py").write_text(
        "import torch\n\nfrom update import LocalUpdate, test_inference\n\nglobal_model = torch.load('model.pt')\n"
        "for loader in loaders:\n    local = LocalUpdate(loader)\n    print(local.inference(model=global_model))\n"
        "print(test_inference(global_model, test_loader))\n")
    (tmp_path / "base.py").write_text(
        "import torch\n\nfrom update import test_inference\n\nmodel = torch.load('base.pt')\n"
        "print(test_inference(model, test_loader))\n")
    found = [(name, row, code) for name, row, code in _found_in(tmp_path, "base.py", "main.py", "update.py")
             if code == "MDL002"]
    assert found == [("update.py", 12, "MDL002"), ("update.py", 18, "MDL002")]


def test_factory_re_exported_by_a_package_star_import(tmp_path: Path) -> None:
    """train.py does `from nets import *`, whose `__init__` only does `from .blocks import *`; the factory
    there builds a model with Dropout, which the script scores every few steps without eval(): reported."""
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "__init__.py").write_text("from .blocks import *\n")
    (tmp_path / "nets" / "blocks.py").write_text(
        "from torch import nn\n\n\nclass Tagger(nn.Module):\n    def __init__(self, width, p):\n"
        "        super().__init__()\n        self.body = nn.Sequential(nn.Linear(width, width), nn.Dropout(p))\n\n"
        "    def forward(self, x):\n        return self.body(x)\n\n\ndef build_tagger(width=16, p=0.2):\n"
        "    return Tagger(width, p)\n")
    script = ("import torch\nfrom nets import *\n\n\ndef main(batches, held_out):\n    tagger = build_tagger()\n"
              "    optimizer = torch.optim.SGD(tagger.parameters(), lr=0.1)\n"
              "    for step, (x, y) in enumerate(batches):\n"
              "        loss = torch.nn.functional.mse_loss(tagger(x), y)\n        optimizer.zero_grad()\n"
              "        loss.backward()\n        optimizer.step()\n        if step % 50 == 0:\n"
              "            with torch.no_grad():\n                print(tagger(held_out).mean().item())\n")
    (tmp_path / "train.py").write_text(script)
    files = ("train.py", "nets/__init__.py", "nets/blocks.py")
    assert ("train.py", 15, "MDL001") in _found_in(tmp_path, *files)
    (tmp_path / "train.py").write_text(script.replace("            with torch.no_grad():\n",
                                                      "            tagger.eval()\n            with torch.no_grad():\n"))
    assert not [f for f in _found_in(tmp_path, *files) if f[2] == "MDL001"]


def test_grad_switch_of_a_torch_alias_brought_in_by_a_star_import(tmp_path: Path) -> None:
    """`from common import *`, where common.py does `import torch as T`: `with T.set_grad_enabled(False):`
    turns autograd off like torch's own (no MDL002 for the evaluation inside; without it, reported)."""
    (tmp_path / "common.py").write_text("import torch as T\nfrom torch import nn\n")
    script = ("import torch\nfrom common import *\n\n\ndef main(batches, held_out):\n"
              "    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.1))\n"
              "    optimizer = torch.optim.Adam(net.parameters())\n    for step, (x, y) in enumerate(batches):\n"
              "        torch.nn.functional.mse_loss(net(x), y).backward()\n        optimizer.step()\n"
              "        if step % 10 == 0:\n            net.eval()\n            with T.set_grad_enabled(False):\n"
              "                print(net(held_out).mean().item())\n            net.train()\n")
    (tmp_path / "train.py").write_text(script)
    assert not [f for f in _found_in(tmp_path, "train.py", "common.py") if f[2] == "MDL002"]
    (tmp_path / "train.py").write_text(script.replace("with T.set_grad_enabled(False):", "if True:"))
    assert ("train.py", 14, "MDL002") in _found_in(tmp_path, "train.py", "common.py")


def test_helper_in_a_file_that_never_names_torch_meets_its_caller(tmp_path: Path) -> None:
    """metrics.py imports only `datasets` (no torch): it is read for its imports first, then analysed as the
    helper the training script calls mid-epoch with the model in training mode (reported there)."""
    (tmp_path / "metrics.py").write_text(
        "from datasets import load_metric\n\n\ndef evaluate_glue(task, model, loader):\n"
        "    metric = load_metric(\"glue\", task)\n    for batch in loader:\n        outputs = model(**batch)\n"
        "        metric.add_batch(predictions=outputs.logits.argmax(dim=-1), references=batch[\"labels\"])\n"
        "    return metric.compute()\n")
    (tmp_path / "train.py").write_text(
        "import torch\nfrom metrics import evaluate_glue\n\n\ndef main(model, optimizer, train_loader, dev_loader):\n"
        "    for epoch in range(3):\n        model.train()\n        for step, batch in enumerate(train_loader):\n"
        "            model(**batch).loss.backward()\n            optimizer.step()\n            optimizer.zero_grad()\n"
        "            if step % 500 == 0:\n                print(evaluate_glue(\"mrpc\", model, dev_loader))\n")
    found = _found_in(tmp_path, "train.py", "metrics.py")
    assert ("metrics.py", 7, "MDL001") in found


def test_trainer_class_whose_creators_hand_only_models_without_mode_layers(tmp_path: Path) -> None:
    """learner.py stores the model its creator hands in and validates it without eval(): reported while the
    script in another file hands it a network with BatchNorm, not once every creator hands a plain MLP."""
    learner = FIXTURES / "MDL001_missing_eval_mode" / "bug_template_learner_validates_the_model_its_caller_hands_in.py"
    (tmp_path / "learner.py").write_text(learner.read_text(encoding="utf-8"))
    script = ("import torch\nfrom torch import nn\n\nfrom learner import ClassifierLearner\n\n\n"
              "def main(train_loader, val_loader):\n"
              "    net = nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 3))\n"
              "    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)\n"
              "    learner = ClassifierLearner(net, optimizer, nn.CrossEntropyLoss(), train_loader, val_loader)\n"
              "    learner.fit(epochs=10)\n")
    (tmp_path / "run.py").write_text(script)
    assert ("learner.py", 51, "MDL001") in _found_in(tmp_path, "learner.py", "run.py")
    (tmp_path / "run.py").write_text(script.replace("nn.BatchNorm1d(64), ", ""))
    assert not [f for f in _found_in(tmp_path, "learner.py", "run.py") if f[2] == "MDL001"]


def test_named_re_export_wins_over_another_package_of_that_name_star_importing(tmp_path: Path) -> None:
    """Two packages called `model`: tts/model re-exports `Synth` by name (its forward is `@torch.no_grad()`),
    avc/model only star-imports a module of its own. `from model import Synth` in tts/infer.py is tts's
    class: its forward records no graph (no MDL002)."""
    for folder in ("tts/model", "avc/model"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "tts/model/__init__.py").write_text("from .synth import Synth\n")
    (tmp_path / "tts/model/synth.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass Synth(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.body = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.1))\n\n"
        "    @torch.no_grad()\n    def forward(self, x):\n        return self.body(x)\n")
    (tmp_path / "avc/model/__init__.py").write_text("from .convert import *\n")
    (tmp_path / "avc/model/convert.py").write_text(
        "from torch import nn\n\n\nclass Converter(nn.Module):\n    def forward(self, x):\n        return x\n")
    (tmp_path / "tts/infer.py").write_text(
        "import torch\nfrom model import Synth\n\nsynth = Synth()\nsynth.load_state_dict(torch.load('synth.pt'))\n"
        "synth.eval()\nmel = synth.forward(torch.randn(1, 8))\nprint(mel.numpy())\n")
    files = ("avc/model/__init__.py", "avc/model/convert.py", "tts/model/__init__.py", "tts/model/synth.py",
             "tts/infer.py")
    assert not [f for f in _found_in(tmp_path, *files) if f[2] == "MDL002"]


def test_hook_run_by_a_base_elsewhere_that_sets_modes_itself(tmp_path: Path) -> None:
    """base.py's template puts the learner in eval mode (`self.eval()`, which switches `self._network`) before
    calling the `_eval_task` hook; the subclass in learner.py builds its network and evaluates it there
    without eval(): no MDL001 (the base chooses the mode). Without the base's switch, reported."""
    base = ("import abc\n\n\nclass Learner(abc.ABC):\n    def eval_task(self, loader):\n        self.eval()\n"
            "        return self._eval_task(loader)\n\n    def train_task(self, loader):\n        self.train()\n"
            "        self._train_task(loader)\n\n    def eval(self):\n        self._network.eval()\n\n"
            "    def train(self):\n        self._network.train()\n")
    (tmp_path / "base.py").write_text(base)
    (tmp_path / "learner.py").write_text(
        "import torch\nfrom torch import nn\n\nfrom base import Learner\n\n\nclass Classifier(Learner):\n"
        "    def __init__(self):\n        self._network = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8))\n\n"
        "    def _eval_task(self, loader):\n        with torch.no_grad():\n"
        "            return [self._network(x).argmax(1).cpu().numpy() for x in loader]\n")
    assert not [f for f in _found_in(tmp_path, "base.py", "learner.py") if f[2] == "MDL001"]
    (tmp_path / "base.py").write_text(base.replace("        self._network.eval()\n", "        pass\n")
                                      .replace("        self._network.train()\n", "        pass\n")
                                      .replace("        self.eval()\n", "").replace("        self.train()\n", ""))
    assert ("learner.py", 13, "MDL001") in _found_in(tmp_path, "base.py", "learner.py")


def test_explicit_forward_of_a_plain_class_of_another_file(tmp_path: Path) -> None:
    """`priorbox.forward()` on a `PriorBox(object)` of the project (anchor boxes, no module) is no model's
    forward: no MDL001 after `PriorBox(cfg)`."""
    (tmp_path / "anchors").mkdir()
    (tmp_path / "anchors" / "__init__.py").write_text("from .prior_box import PriorBox\n")
    prior_box = ("import torch\nfrom torch import nn\n\n\nclass PriorBox(object):\n    def __init__(self, cfg):\n"
                 "        self.sizes = cfg['sizes']\n\n    def forward(self):\n"
                 "        return torch.tensor(self.sizes).clamp(max=1.0)\n")
    (tmp_path / "anchors" / "prior_box.py").write_text(prior_box)
    (tmp_path / "detect.py").write_text(
        "import torch\nfrom anchors import PriorBox\n\npriorbox = PriorBox({'sizes': [0.1, 0.2]})\n"
        "with torch.no_grad():\n    priors = priorbox.forward()\nprint(priors.numpy())\n")
    files = ("anchors/__init__.py", "anchors/prior_box.py", "detect.py")
    assert not [f for f in _found_in(tmp_path, *files) if f[2] == "MDL001"]


def test_class_of_a_star_imported_module_is_looked_up(tmp_path: Path) -> None:
    """`from nets import *` brings in a Linear-only class: sampling it in training mode changes nothing (no
    MDL001); the same class with Dropout is reported."""
    nets = ("from torch import nn\n\n\nclass EdgeMLP(nn.Module):\n    def __init__(self, width):\n"
            "        super().__init__()\n        self.body = nn.Sequential(nn.Linear(width, width), nn.ReLU())\n\n"
            "    def forward(self, x):\n        return self.body(x)\n")
    (tmp_path / "nets.py").write_text(nets)
    (tmp_path / "sample.py").write_text(
        "import torch\nfrom nets import *\n\nmlp = EdgeMLP(8)\nmlp.load_state_dict(torch.load('mlp.pt'))\n"
        "with torch.no_grad():\n    print(mlp(torch.rand(4, 8)).argmax(1).tolist())\n")
    assert not [f for f in _found_in(tmp_path, "nets.py", "sample.py") if f[2] == "MDL001"]
    (tmp_path / "nets.py").write_text(nets.replace("nn.ReLU())", "nn.Dropout(0.5))"))
    assert ("sample.py", 7, "MDL001") in _found_in(tmp_path, "nets.py", "sample.py")


def test_evaluation_helper_nested_in_a_test_folder_script_is_no_unit_test(tmp_path: Path) -> None:
    """A training script under `test/` (an integration run) defines `test_loop_fn` inside its `train_mnist()`:
    pytest never collects a nested function, so its evaluation with autograd on is reported; a module-level
    `test_*` function of the same folder is a unit test and is not."""
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "test_train_mnist.py").write_text(
        "import torch\nfrom torch import nn\n\n\ndef train_mnist(loader, test_loader):\n"
        "    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.Dropout(0.5), nn.Linear(64, 10))\n"
        "    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)\n\n"
        "    def test_loop_fn(loader):\n        model.eval()\n        correct = 0\n        for x, y in loader:\n"
        "            output = model(x)\n            correct += output.argmax(1).eq(y).sum().item()\n"
        "        return correct\n\n"
        "    for x, y in loader:\n        model.train()\n        nn.functional.cross_entropy(model(x), y).backward()\n"
        "        optimizer.step()\n        optimizer.zero_grad()\n    return test_loop_fn(test_loader)\n")
    assert ("test_train_mnist.py", 13, "MDL002") in _found_in(tmp_path / "test", "test_train_mnist.py")
    (tmp_path / "test" / "test_model.py").write_text(
        "import torch\n\n\ndef test_accuracy(model, loader):\n    model.eval()\n    correct = 0\n"
        "    for x, y in loader:\n        output = model(x)\n        correct += output.argmax(1).eq(y).sum().item()\n"
        "    assert correct > 0\n")
    assert not _found_in(tmp_path / "test", "test_model.py")


def test_lowercase_module_class_of_another_file_is_asked_of_the_index(tmp_path: Path) -> None:
    """`from models import net` (an RL repo's Linear-only policy class, named in lower case): the index says
    what the class holds, so the greedy action under no_grad is no MDL001; with a Dropout it is one."""
    models = ("import torch.nn as nn\nimport torch.nn.functional as F\n\n\nclass net(nn.Module):\n"
              "    def __init__(self, obs, actions):\n        super().__init__()\n        self.fc1 = nn.Linear(obs, 64)\n"
              "        self.fc2 = nn.Linear(64, actions)\n\n    def forward(self, x):\n"
              "        return self.fc2(F.relu(self.fc1(x)))\n")
    (tmp_path / "models.py").write_text(models)
    (tmp_path / "demo.py").write_text(
        "import torch\nfrom models import net\n\nnetwork = net(4, 2)\nnetwork.load_state_dict(torch.load('model.pt'))\n"
        "obs = torch.zeros(1, 4)\nwith torch.no_grad():\n    action = network(obs).argmax(-1).item()\nprint(action)\n")
    assert not [f for f in _found_in(tmp_path, "models.py", "demo.py") if f[2] == "MDL001"]
    (tmp_path / "models.py").write_text(models.replace("self.fc2(F.relu(self.fc1(x)))",
                                                       "self.fc2(self.drop(F.relu(self.fc1(x))))").replace(
        "        self.fc2 = nn.Linear(64, actions)\n", "        self.fc2 = nn.Linear(64, actions)\n        self.drop = nn.Dropout(0.5)\n"))
    assert ("demo.py", 8, "MDL001") in _found_in(tmp_path, "models.py", "demo.py")


def test_an_import_finds_the_file_python_imports_not_a_nested_namesake(tmp_path: Path) -> None:
    """`from models.base import Estimator` in `models/mlp.py` imports `models/base.py` (a plain class that
    names no torch), not the vendored `models/vendor/models/base.py` (an nn.Module of the same names): the
    estimator's `self.model` stays a model it cannot see, evaluated with autograd on."""
    (tmp_path / "models" / "vendor" / "models").mkdir(parents=True)
    (tmp_path / "models" / "base.py").write_text(
        "class Estimator:\n    def __init__(self, params):\n        self.params = params\n        self.model = None\n")
    (tmp_path / "models" / "vendor" / "models" / "base.py").write_text(
        "import torch.nn as nn\n\n\nclass Estimator(nn.Module):\n    def __init__(self, columns):\n"
        "        super().__init__()\n        self.columns = columns\n")
    (tmp_path / "models" / "mlp.py").write_text(
        "import torch\nimport torch.nn as nn\n\nfrom models.base import Estimator\n\n\n"
        "class TorchEstimator(Estimator):\n    def fit(self, train_loader, val_loader):\n"
        "        optimizer = torch.optim.Adam(self.model.parameters())\n"
        "        for x, y in train_loader:\n            loss = nn.functional.mse_loss(self.model(x), y)\n"
        "            optimizer.zero_grad()\n            loss.backward()\n            optimizer.step()\n"
        "        val_loss = 0.0\n        for x, y in val_loader:\n"
        "            val_loss += nn.functional.mse_loss(self.model(x), y).item()\n        return val_loss\n")
    found = _found_in(tmp_path, "models/base.py", "models/vendor/models/base.py", "models/mlp.py")
    assert ("mlp.py", 17, "MDL002") in found


def test_a_method_of_a_module_class_nested_in_a_function_is_no_internal_error(tmp_path: Path) -> None:
    """`box.sharded_state_dict()` where the one class defining that method is a module class nested in a test
    method: its qualname is not `Leaf.sharded_state_dict`, and the call is no forward either."""
    (tmp_path / "test_dicts.py").write_text(
        "import torch.nn as nn\n\n\nclass TestHelpers:\n    def test_module_dict(self):\n"
        "        class Leaf(nn.Module):\n            def __init__(self, name):\n                super().__init__()\n"
        "                self.name = name\n\n            def sharded_state_dict(self, prefix=''):\n"
        "                return {prefix + self.name: self.name}\n\n"
        "        box = nn.ModuleDict({'a': Leaf('a'), 'b': Leaf('b')})\n"
        "        out = box.sharded_state_dict(prefix='x.')\n        assert 'x.a' in out\n")
    assert _found_in(tmp_path, "test_dicts.py") == []


def test_a_context_manager_that_takes_the_mode_as_an_argument(tmp_path: Path) -> None:
    """`_in_mode(model, train=False)` calls `model.train(mode=train)` before its yield and restores after: the
    caller's argument decides the mode of the body, also through `in_eval_mode()` built on it."""
    helpers = ("import contextlib\n\nimport torch\n\n\n@contextlib.contextmanager\ndef _in_mode(model, train):\n"
               "    original = model.training\n    try:\n        model.train(mode=train)\n        yield\n"
               "    finally:\n        model.train(mode=original)\n\n\n@contextlib.contextmanager\n"
               "def in_eval_mode(model):\n    with _in_mode(model, train=False):\n        yield\n\n\n"
               "def probe(model, x):\n    model.train()\n    with CONTEXT, torch.no_grad():\n"
               "        y = model(x)\n    return y.argmax().item()\n")
    for context, reported in (("in_eval_mode(model)", False), ("_in_mode(model, train=False)", False),
                              ("_in_mode(model, train=True)", True), ("_in_mode(model, flag)", False)):
        (tmp_path / "probe.py").write_text(helpers.replace("CONTEXT", context))
        assert (("probe.py", 25, "MDL001") in _found_in(tmp_path, "probe.py")) is reported, context


def test_a_factory_of_another_file_returning_plain_wrapper_objects(tmp_path: Path) -> None:
    """`build_detector(cfg)` hands back one of two plain classes of other files (each running its own network
    in eval mode under no_grad): the tracker calling the object runs no model of its own. Were one of them
    an nn.Module with BatchNorm, that call would be an evaluation in training mode."""
    (tmp_path / "detector").mkdir()
    (tmp_path / "detector" / "mmdet_wrapper.py").write_text(
        "from mmdet.apis import inference_detector, init_detector\n\n\nclass MMDetWrapper(object):\n"
        "    def __init__(self, cfg, checkpoint):\n        self.net = init_detector(cfg, checkpoint)\n\n"
        "    def __call__(self, img):\n        return inference_detector(self.net, img)\n")
    torch_wrapper = ("import torch\nimport torch.nn as nn\n\n\nclass TorchWrapper(object):\n"
                     "    def __init__(self, weights):\n"
                     "        self.net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))\n"
                     "        self.net.load_state_dict(torch.load(weights))\n        self.net.eval()\n\n"
                     "    def __call__(self, img):\n        with torch.no_grad():\n            return self.net(img)\n")
    (tmp_path / "detector" / "torch_wrapper.py").write_text(torch_wrapper)
    (tmp_path / "detector" / "__init__.py").write_text(
        "from .mmdet_wrapper import MMDetWrapper\nfrom .torch_wrapper import TorchWrapper\n\n\n"
        "def build_detector(cfg):\n    if cfg['use_mmdet']:\n        return MMDetWrapper(cfg['config'], cfg['checkpoint'])\n"
        "    return TorchWrapper(cfg['weights'])\n")
    (tmp_path / "track.py").write_text(
        "import torch\n\nfrom detector import build_detector\n\n\nclass Tracker:\n    def __init__(self, cfg):\n"
        "        self.detector = build_detector(cfg)\n\n    def run(self, frames):\n        for frame in frames:\n"
        "            boxes = self.detector(frame)\n            print(boxes[boxes[:, 4] > 0.7].tolist())\n")
    files = ("track.py", "detector/__init__.py", "detector/mmdet_wrapper.py", "detector/torch_wrapper.py")
    assert _found_in(tmp_path, *files) == []
    (tmp_path / "detector" / "torch_wrapper.py").write_text(
        torch_wrapper.replace("class TorchWrapper(object):", "class TorchWrapper(nn.Module):").replace(
            "    def __init__(self, weights):\n", "    def __init__(self, weights):\n        super().__init__()\n").replace(
            "        self.net.eval()\n", ""))
    assert ("track.py", 12, "MDL001") in _found_in(tmp_path, *files)


def test_a_base_of_another_file_whose_fit_ends_in_eval_mode(tmp_path: Path) -> None:
    """`NeuMF.predict()` evaluates `self`, and the recommender's base in another file trains it in `fit()`,
    which ends every epoch with `self.eval()`: the class does set its own mode (no MDL001); the graph its
    `predict()` keeps is still MDL002. A base that never switches modes leaves the MDL001."""
    base = ("import torch\nimport torch.nn as nn\n\n\nclass GeneralRecommender(nn.Module):\n"
            "    def fit(self, loader, epochs=3):\n        opt = torch.optim.Adam(self.parameters())\n"
            "        for _ in range(epochs):\n            self.train()\n            for users, items, labels in loader:\n"
            "                opt.zero_grad()\n                nn.functional.mse_loss(self(users, items), labels).backward()\n"
            "                opt.step()\n            self.eval()\n")
    (tmp_path / "base.py").write_text(base)
    (tmp_path / "neumf.py").write_text(
        "import torch\nimport torch.nn as nn\n\nfrom base import GeneralRecommender\n\n\n"
        "class NeuMF(GeneralRecommender):\n    def __init__(self, users, items, dim=16):\n        super().__init__()\n"
        "        self.users = nn.Embedding(users, dim)\n        self.items = nn.Embedding(items, dim)\n"
        "        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Dropout(0.3), nn.Linear(dim, 1))\n\n"
        "    def forward(self, u, i):\n        return self.mlp(torch.cat([self.users(u), self.items(i)], -1)).view(-1)\n\n"
        "    def predict(self, u, i):\n        return self.forward(torch.tensor([u]), torch.tensor([i])).cpu().item()\n")
    found = [code for name, row, code in _found_in(tmp_path, "base.py", "neumf.py") if name == "neumf.py"]
    assert found == ["MDL002"]
    (tmp_path / "base.py").write_text(base.replace("            self.eval()\n", "").replace("            self.train()\n", ""))
    found = [code for name, row, code in _found_in(tmp_path, "base.py", "neumf.py") if name == "neumf.py"]
    assert sorted(found) == ["MDL001", "MDL002"]


def test_a_modules_own_ranking_method_called_from_another_file(tmp_path: Path) -> None:
    """`model.rank(test_loader)` in the experiment script runs the recommender's own forward (`self.forward`)
    after `fit()` left it in eval mode, with autograd on: the method's forward of `self` is the caller's
    model's, across files as within one (MDL002 at the forward, no MDL001)."""
    (tmp_path / "neural.py").write_text(
        "import torch\nimport torch.nn as nn\n\n\nclass NeuralRec(nn.Module):\n    def __init__(self, users, items, dim=16):\n"
        "        super().__init__()\n        self.users = nn.Embedding(users, dim)\n        self.items = nn.Embedding(items, dim)\n"
        "        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(0.2), nn.Linear(dim, 1))\n\n"
        "    def forward(self, u, i):\n        return self.mlp(self.users(u) * self.items(i)).squeeze(-1)\n\n"
        "    def fit(self, loader):\n        opt = torch.optim.Adam(self.parameters())\n        self.train()\n"
        "        for u, i, y in loader:\n            loss = nn.functional.binary_cross_entropy_with_logits(self(u, i), y)\n"
        "            opt.zero_grad()\n            loss.backward()\n            opt.step()\n        self.eval()\n\n"
        "    def rank(self, test_loader, k=10):\n        found = []\n        for users, candidates in test_loader:\n"
        "            scores = self.forward(users.unsqueeze(1).expand_as(candidates), candidates)\n"
        "            found.append(torch.gather(candidates, 1, scores.argsort(descending=True))[:, :k])\n"
        "        return torch.cat(found).cpu().numpy()\n")
    (tmp_path / "run.py").write_text(
        "from neural import NeuralRec\n\n\ndef run(train_loader, test_loader, hits):\n    model = NeuralRec(100, 500)\n"
        "    model.fit(train_loader)\n    preds = model.rank(test_loader)\n    return (preds == hits[:, None]).any(1).mean()\n")
    assert _found_in(tmp_path, "neural.py", "run.py") == [("neural.py", 28, "MDL002")]


def test_a_method_of_a_plain_class_of_another_file_evaluating_a_handed_model(tmp_path: Path) -> None:
    """`local = LocalUpdate(args)` (a plain class of another file: an object, no module), then
    `local.inference(model=global_model)`: its method runs the model it is handed, after the server put it in
    eval mode, with autograd on."""
    (tmp_path / "update.py").write_text(
        "import torch\n\n\nclass LocalUpdate(object):\n    def __init__(self, loader):\n        self.loader = loader\n\n"
        "    def inference(self, model):\n        model.eval()\n        correct = 0\n        for images, labels in self.loader:\n"
        "            correct += (model(images).argmax(1) == labels).sum().item()\n        return correct\n")
    (tmp_path / "server.py").write_text(
        "import torch.nn as nn\n\nfrom update import LocalUpdate\n\n\ndef rounds(loaders):\n"
        "    global_model = nn.Sequential(nn.Linear(784, 64), nn.Dropout(0.5), nn.Linear(64, 10))\n"
        "    for loader in loaders:\n        local = LocalUpdate(loader)\n        print(local.inference(model=global_model))\n")
    assert ("update.py", 12, "MDL002") in _found_in(tmp_path, "update.py", "server.py")


def test_a_forward_gated_by_its_training_flag_in_another_file(tmp_path: Path) -> None:
    """The detector's class (another file) runs its forward under `set_grad_enabled(self.training)`: the
    evaluation script, which puts it in eval mode, records no graph; without the gate it does (MDL002)."""
    model = ("import torch\nfrom torch import nn\n\n\nclass RCNN(nn.Module):\n    def __init__(self):\n"
             "        super().__init__()\n        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))\n\n"
             "    def forward(self, img):\n        with torch.set_grad_enabled(self.training):\n"
             "            return self.body(img).mean(dim=(2, 3))\n")
    (tmp_path / "model.py").write_text(model)
    (tmp_path / "evaluate_net.py").write_text(
        "import torch\n\nfrom model import RCNN\n\n\ndef im_detect(model, img):\n    scores = model(img)\n"
        "    return scores.softmax(-1).cpu().numpy()\n\n\ndef evaluate_net(images):\n    net = RCNN()\n"
        "    net.load_state_dict(torch.load('model.pt'))\n    net.eval()\n"
        "    return [im_detect(net, im) for im in images]\n")
    assert _found_in(tmp_path, "model.py", "evaluate_net.py") == []
    (tmp_path / "model.py").write_text(model.replace(
        "        with torch.set_grad_enabled(self.training):\n            return", "        return"))
    assert _found_in(tmp_path, "model.py", "evaluate_net.py") == [("evaluate_net.py", 7, "MDL002")]


@pytest.mark.parametrize("select", [("MDL003",), ("MDL001", "MDL002", "MDL003")])
def test_a_model_class_of_another_file_trained_after_eval_is_asked_about(select) -> None:
    """runner.py alone trains on after `score.eval()`; the network, in networks.py, has no Dropout or BatchNorm
    (InstanceNorm without running statistics). The training step asks the index about the class whatever
    rules are selected, so networks.py is read and nothing is reported (once only with MDL002 selected)."""
    runner = FIXTURES / "cross_file" / "score_net_pkg" / "runner.py"
    run = run_paths([str(runner)], ConfigResolver(), Overrides(select=select), jobs=1)
    assert run.findings == []


def test_a_base_class_re_exported_by_its_package_is_seen_by_subclasses_elsewhere() -> None:
    """`from hooks_pkg import Trainer`, where `hooks_pkg/__init__.py` only imports it from `trainer.py`: the
    subclass's file finds the base's shape through that import (the base's `train_epoch_start()` switches
    `self.model`, so the hooks' starting mode is the base's choice)."""
    from modelint.summary import ProjectIndex

    package = FIXTURES / "cross_file" / "hooks_pkg"
    paths = [package / "__init__.py", package / "trainer.py", package / "examples" / "detection_trainer.py"]
    summaries = [engine.lint_path(str(p), frozenset(all_rules())).summary for p in paths]
    index = ProjectIndex([s for s in summaries if s is not None])
    found = index.resolve_shape("hooks_pkg.Trainer", str(paths[2]))
    assert found is not None and Path(found[1]).name == "trainer.py"
    assert "self.model" in found[0].switches


def test_a_base_waiting_on_a_plain_class_of_another_file_is_settled_by_it() -> None:
    """operators_pkg's `Operator` builds `MultiScale`, a plain class of the utils package, in one of its
    methods. Its file alone cannot tell whether that is a module, so it waits on it; once the index shows a
    class with no base, the subclass in degradations.py is as mode-free as the base (`Downsample`, evaluated
    under no_grad in demo.py, need not be put in eval mode)."""
    from modelint.registry import FLOW_RULES
    from modelint.summary import ProjectIndex

    package = FIXTURES / "cross_file" / "operators_pkg"
    first = [engine.lint_path(str(package / p), frozenset(all_rules())).summary
             for p in ("utils/__init__.py", "ops/base.py")]
    assert first[1].classes_waiting.get("Operator") == ("operators_pkg.utils.MultiScale",)
    # structures.py names no torch: the runner summarises it as a helper, with the index of the first phase
    helper = engine.lint_path(str(package / "utils" / "structures.py"), FLOW_RULES, ProjectIndex(first)).summary
    index = ProjectIndex([*first, helper])
    assert index.resolve_class("operators_pkg.ops.base.Operator", str(package / "ops" / "degradations.py")) == 0
