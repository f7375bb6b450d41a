"""Identical weights, identical outputs: earmark's teachers against the reference implementations.

Clone the references side by side, give timm 0.4.5 and einops a private folder, and point --refs at the parent:

    git clone https://github.com/microsoft/unilm        REFS/unilm
    git clone https://github.com/Audio-WestlakeU/audiossl REFS/audiossl
    git clone https://github.com/Sara-Ahmed/ASiT         REFS/ASiT
    git clone https://github.com/YuanGongND/ssast        REFS/ssast
    git clone https://github.com/YuanGongND/ast          REFS/ast
    pip install --no-deps --target REFS/deps einops timm==0.4.5
    python bench/reference_parity.py --refs REFS

Each check builds a reference model, perturbs every parameter (so a dropped norm or gate would show), saves it in the
official checkpoint layout, converts it with ``earmark convert`` and prints the largest absolute difference between
the two models' outputs on one input. The references' training-only imports (Lightning, transformers, torchvision,
wget) become empty modules, and ``torch._six``, which timm 0.4.5 imports and torch 2 removed, gets its aliases back.
"""

from __future__ import annotations

import argparse
import collections.abc
import importlib.util
import sys
import tempfile
import types
from pathlib import Path

import torch

from earmark.audio.features_torch import Frontend
from earmark.teachers import teacher_from_checkpoint
from earmark.teachers.convert import convert

Row = tuple[str, str, str, float]


class _Empty(types.ModuleType):
    """A stand-in for a package the reference imports but the compared model never calls."""

    def __getattr__(self, name: str) -> "_Empty":
        return _Empty(name)

    def __call__(self, *args, **kwargs) -> "_Empty":
        return self


def _install_stand_ins() -> None:
    six = types.ModuleType("torch._six")
    six.container_abcs, six.string_classes, six.int_classes = collections.abc, (str, bytes), int
    sys.modules["torch._six"] = six
    lightning = types.ModuleType("pytorch_lightning")
    lightning.LightningModule = torch.nn.Module
    sys.modules["pytorch_lightning"] = lightning
    for name in ("transformers", "transformers.optimization", "audiossl.utils", "audiossl.utils.common", "wget",
                 "torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.datasets"):
        sys.modules[name] = _Empty(name)
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]


def _load(path: Path, name: str, *search: Path) -> types.ModuleType:
    """Import one reference file under a unique name, with its own folders first on the path."""
    sys.path[:0] = [str(p) for p in search]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _perturb(model: torch.nn.Module, scale: float = 0.02) -> torch.nn.Module:
    with torch.no_grad():
        for p in filter(torch.is_floating_point, model.parameters()):  # SSAST keeps its input shape as int parameters
            p.add_(scale * torch.randn_like(p))
    return model.eval()


def _converted(fmt: str, ckpt: dict, tmp: Path, **options) -> torch.nn.Module:
    tmp.mkdir(parents=True, exist_ok=True)
    src = tmp / f"{fmt}.pt"
    torch.save(ckpt, src)
    path, _ = convert(fmt, src, tmp / f"{fmt}-earmark", **options)
    return teacher_from_checkpoint(path)[0].eval()


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def check_beats(refs: Path, tmp: Path) -> list[Row]:
    beats = _load(refs / "unilm/beats/BEATs.py", "ref_beats", refs / "unilm/beats")
    rows = []
    for finetuned in (False, True):
        cfg = dict(input_patch_size=16, embed_dim=32, encoder_embed_dim=64, encoder_layers=2, encoder_attention_heads=4,
                   encoder_ffn_embed_dim=128, conv_pos=16, conv_pos_groups=4, relative_position_embedding=True,
                   num_buckets=320, max_distance=800, gru_rel_pos=True, deep_norm=True, layer_norm_first=False,
                   finetuned_model=finetuned, predictor_class=5)
        ref = _perturb(beats.BEATs(beats.BEATsConfig(cfg)), 0.05)
        ckpt = {"cfg": cfg, "model": ref.state_dict(), **({"label_dict": {i: f"c{i}" for i in range(5)}} if finetuned else {})}
        ours = _converted("beats", ckpt, tmp / f"beats{int(finetuned)}")
        wave = 0.1 * torch.randn(2, 16000 * 3)
        with torch.no_grad():
            theirs, _ = ref.extract_features(wave)  # their own kaldi fbank; ours runs the `beats` frontend
            out = ours(Frontend("beats")(wave).unsqueeze(1))
        mine = torch.sigmoid(out.clip_logits) if finetuned else out.tokens
        rows.append(("" if finetuned else "unilm beats/BEATs.py", "finetuned, 5 classes" if finetuned else "tiny cfg, 2 DeepNorm layers, gated rel. positions",
                     "sigmoid clip probabilities (3 s noise)" if finetuned else "encoder tokens (3 s noise, with frontend)",
                     _diff(theirs, mine)))
    return rows


def check_asit(refs: Path, tmp: Path) -> list[Row]:
    vit = _load(refs / "ASiT/vision_transformer.py", "ref_asit", refs / "ASiT")
    ref = _perturb(vit.vit_small(audio_size=[592, 128], in_chans=1))
    ours = _converted("asit", {"teacher": {f"backbone.{k}": v for k, v in ref.state_dict().items()}}, tmp / "asit",
                      sample_rate=16000)
    features = torch.randn(2, 1, 128, 592)  # earmark: (B, 1, mel, frames); ASiT: (B, 1, frames, mel)
    with torch.no_grad():
        theirs, out = ref(features.transpose(2, 3)), ours(features)
    return [("Sara-Ahmed/ASiT vision_transformer.py", "vit_small, 592 x 128", "cls token", _diff(theirs[:, 0], out.clip_embedding)),
            ("", "", "patch tokens", _diff(theirs[:, 1:], out.tokens))]


def check_atst(refs: Path, tmp: Path) -> list[Row]:
    root = refs / "audiossl"
    clip = _load(root / "audiossl/models/atst/audio_transformer.py", "ref_atst_clip", refs / "deps", root)
    frame = _load(root / "audiossl/methods/atstframe/downstream/comparison_models/models/frame_atst.py", "ref_atst_frame", root)
    features, length = torch.randn(2, 1, 64, 601), torch.tensor([601, 601])  # 6 s of `atst` log-mel frames
    rows = []
    for fmt, ref in (("atst-clip", clip.AST_small(use_cls=True)), ("atst-frame", frame.FrameAST_small())):
        ref = _perturb(ref)
        lightning = {"state_dict": {f"model.teacher.encoder.{k}": v for k, v in ref.state_dict().items()}, "epoch": 1}
        ours = _converted(fmt, lightning, tmp / fmt)
        with torch.no_grad():
            out = ours(features)
            if fmt == "atst-clip":
                tokens = ref.get_intermediate_layers(features, length, n=1)[0][:, 1:]
                rows.append(("audiossl AST_small", "ATST-Clip small, 150 tokens", "cls token", _diff(ref(features, length=length), out.clip_embedding)))
            else:
                tokens = ref.get_intermediate_layers(features, length, n=1, scene=False)
                rows.append(("audiossl FrameAST_small", "ATST-Frame small, 150 tokens", "mean frame token",
                             _diff(ref.get_intermediate_layers(features, length, n=1, scene=True), out.clip_embedding)))
        rows.append(("", "", "frame tokens", _diff(tokens, out.tokens)))
    return rows


def _final_tokens(vit: torch.nn.Module) -> dict:
    seen: dict = {}
    vit.norm.register_forward_hook(lambda module, inputs, output: seen.__setitem__("tokens", output))
    return seen


def check_ssast(refs: Path, tmp: Path) -> list[Row]:
    ssast = _load(refs / "ssast/src/models/ast_models.py", "ref_ssast", refs / "deps")
    rows = []
    for fshape, tshape, frames in ((16, 16, 256), (128, 2, 200)):
        shape = dict(fshape=fshape, tshape=tshape, fstride=fshape, tstride=tshape, input_fdim=128, input_tdim=frames, model_size="tiny")
        pretrained = torch.nn.DataParallel(_perturb(ssast.ASTModel(pretrain_stage=True, **shape)))
        ours = _converted("ssast", pretrained.state_dict(), tmp / f"ssast{fshape}")
        torch.save(pretrained.state_dict(), tmp / f"ssast{fshape}.pth")
        ref = ssast.ASTModel(label_dim=5, pretrain_stage=False, load_pretrained_mdl_path=str(tmp / f"ssast{fshape}.pth"), **shape).eval()
        ref.mlp_head = torch.nn.Identity()
        seen = _final_tokens(ref.v)
        spectrogram = torch.randn(2, frames, 128)  # SSAST: (B, frames, mel)
        with torch.no_grad():
            mean = ref(spectrogram, task="ft_avgtok")
            out = ours(spectrogram.transpose(1, 2).unsqueeze(1))
        kind = "patch 16x16" if fshape == 16 else "frame 128x2"
        rows += [("YuanGongND/ssast ASTModel", f"tiny, {kind}, {frames} frames", "mean token", _diff(mean, out.clip_embedding)),
                 ("", "", "patch tokens", _diff(seen["tokens"][:, 2:], out.tokens))]
    return rows


def check_ast(refs: Path, tmp: Path) -> list[Row]:
    ast = _load(refs / "ast/src/models/ast_models.py", "ref_ast", refs / "deps")
    ref = _perturb(ast.ASTModel(label_dim=7, fstride=10, tstride=10, input_fdim=128, input_tdim=1024,
                                imagenet_pretrain=False, audioset_pretrain=False, model_size="base384"))
    ours = _converted("ast", torch.nn.DataParallel(ref).state_dict(), tmp / "ast")
    spectrogram = torch.randn(1, 1024, 128)
    with torch.no_grad():
        theirs, out = ref(spectrogram), ours(spectrogram.transpose(1, 2).unsqueeze(1))
    return [("YuanGongND/ast ASTModel", "base384, stride 10, 1212 patches", f"clip logits (scale {theirs.abs().max():.1f})",
             _diff(theirs, out.clip_logits))]


CHECKS = {"beats": check_beats, "asit": check_asit, "atst": check_atst, "ssast": check_ssast, "ast": check_ast}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=Path, required=True, help="folder holding the cloned references and deps/")
    parser.add_argument("--only", nargs="*", choices=sorted(CHECKS), default=sorted(CHECKS))
    args = parser.parse_args()
    _install_stand_ins()
    torch.manual_seed(0)
    print("| reference | configuration | compared | max abs difference |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            for reference, config, compared, diff in CHECKS[name](args.refs, Path(tmp) / name):
                print(f"| {reference} | {config} | {compared} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
