"""Methods a framework calls itself, in eval mode and under no_grad, during its test loops.

Lightning's `validation_step` and friends are in torch_api (LIGHTNING_EVAL_HOOKS). OpenMMLab's models and
heads are tested through `model(return_loss=False, ...)`, which dispatches to `forward_test` and then
`simple_test` or `aug_test`; its test loops (`single_gpu_test`, the evaluation hooks) run that call under
`torch.no_grad()` after `model.eval()`. A class inherits the protocol from an OpenMMLab base."""

from __future__ import annotations

from modelint.facts.scopes import FunctionInfo

OPENMMLAB_PACKAGES = ("mmcv.", "mmengine.", "mmdet.", "mmdet3d.", "mmcls.", "mmpretrain.", "mmseg.", "mmpose.",
                      "mmaction.", "mmrotate.", "mmocr.", "mmedit.", "mmagic.", "mmtrack.")
OPENMMLAB_TEST_HOOKS = frozenset({"forward_test", "simple_test", "aug_test"})


def openmmlab_test_hook(flow, function: FunctionInfo) -> bool:
    """Is the method a test hook of a class deriving, here or through bases of this file, from an OpenMMLab
    class (`class MLPHead(ClsHead)` with `from mmcls.models.heads import ClsHead`)?"""
    if function.name not in OPENMMLAB_TEST_HOOKS or function.cls is None:
        return False
    pending, seen = [function.cls], set()
    while pending:
        cls = pending.pop()
        seen.add(cls.name)
        for base in cls.bases:
            if (flow.imports.qualify(base) or "").startswith(OPENMMLAB_PACKAGES):
                return True
            project = flow.modules.project_class(base)
            if project is not None and project.name not in seen:
                pending.append(project)
    return False
